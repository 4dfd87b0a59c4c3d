"""The lab's real Kubernetes: the seed's components built from their published Go modules
(components.py, gobuild.py), and what installs them on lab Pis."""
