"""The validating admission webhook the controller serves for MetalLB's kinds."""
