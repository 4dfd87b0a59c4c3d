"""The load balancer: a MetalLB-compatible speaker and controller (see docs/architecture.md)."""
