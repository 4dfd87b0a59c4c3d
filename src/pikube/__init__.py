"""pikube: bare-metal Kubernetes on Raspberry Pi.

Three parts: the cluster builder (`pikube.cluster`), the MetalLB-compatible load balancer
(`pikube.lb`) and the lab, a virtual LAN of network namespaces (`pikube.lab`).
"""

__version__ = "0.1.0"
