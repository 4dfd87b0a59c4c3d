"""The lab's real Kubernetes: builds, packages, images, registry and nodes."""
