"""MetalLB-compatible manifests -> pikube's model, with validation errors that say where.

`parse_documents` is pure: it takes documents that are already loaded (dicts, as YAML or the
Kubernetes API gives them) together with where each came from, and returns one
`ClusterResources`. `load_manifests` is the thin adapter that reads files and directories.

What is read:
- `metallb.io` IPAddressPool, L2Advertisement, BGPAdvertisement, Community, BFDProfile
  (v1beta1) and BGPPeer (v1beta2, and v1beta1 converted). Every spec field MetalLB documents is
  either read into the model or rejected by name with the reason (`_REJECTED`); a field MetalLB
  does not know is an error, as `kubectl apply` with strict validation would say.
- Services, Namespaces, Nodes (v1) and EndpointSlices (discovery.k8s.io/v1): only the fields
  the load balancer uses are read, the rest of those objects is not pikube's business.
- `kind: List` documents (what `kubectl get -o yaml` prints) are opened.
- Anything else (Deployments, ConfigMaps, ...) and the status objects MetalLB writes are skipped.

Every error is a `ConfigError` whose one line names the file, the document, the object
(kind and name) and the field, then says what is wrong in the user's words.

This module must not allocate addresses (that is `pikube.lb.ipam`) nor watch files.
"""

from __future__ import annotations

from pikube.lb.config.bgp import parse_community, parse_duration_s
from pikube.lb.config.constants import MAX_ASN, METALLB_GROUP
from pikube.lb.config.documents import parse_documents
from pikube.lb.config.fields import ConfigError, Origin, parse_address_range
from pikube.lb.config.loader import (
    documents_from_text,
    load_manifests,
    manifest_files,
    read_documents,
)

__all__ = [
    "MAX_ASN",
    "METALLB_GROUP",
    "ConfigError",
    "Origin",
    "documents_from_text",
    "load_manifests",
    "manifest_files",
    "parse_address_range",
    "parse_community",
    "parse_documents",
    "parse_duration_s",
    "read_documents",
]
