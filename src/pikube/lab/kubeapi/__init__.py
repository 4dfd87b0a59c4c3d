"""A Kubernetes API stand-in for the lab: an in-memory API server that the real kubectl and a
real Python Kubernetes client cannot tell from kube-apiserver for what pikube and the seed do.

It is lab infrastructure (no kube-apiserver can be had on the machines pikube is built and
tested on), never something users deploy. Pure parts, each tested without I/O:

    resources.py   the served kinds: built-ins, and those CRDs add
    store.py       objects, the global resourceVersion, watches, 409/410, finalizers
    patch.py       JSON merge patch, JSON patch, strategic merge patch (approximation)
    selectors.py   label and field selectors
    defaults.py    defaulting and validation (422) as the real server does them
    discovery.py   /api, /apis, aggregated discovery, OpenAPI v3 stubs, /version
    tables.py      server-side printing for `kubectl get`
    routing.py     URL paths and media types
    seed.py        the `kubernetes` Service and the lab's Node objects
    pki.py         cluster CA, serving and admin certificates, admin kubeconfig

Adapters: server.py (aiohttp, TLS, routing) with bodies.py (request and response bodies),
watching.py (watch streams) and documents.py (discovery and OpenAPI responses); __main__.py
(the process), and launch.py (`start_in_lab(lab)`: PKI, the process in `master`, Node
registration; `pikube lab up` calls it).
"""
