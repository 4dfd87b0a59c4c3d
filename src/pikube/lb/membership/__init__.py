"""Speaker membership: authenticated heartbeats on the announcing interfaces."""
