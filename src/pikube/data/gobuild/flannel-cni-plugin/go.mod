// pikube builds flannel-cni-plugin from this module: it requires the upstream module at the pinned
// version, and tools.go names the programs built (see pikube/lab/kubernetes/components.py).
module pikube.local/gobuild/flannel-cni-plugin

go 1.15

require github.com/containernetworking/plugins v0.9.1
