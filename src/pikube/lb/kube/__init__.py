"""The load balancer's side of the Kubernetes API: a thin client (api), informers that keep a
local cache per kind (informer), and the conversion of API objects into pikube's model."""
