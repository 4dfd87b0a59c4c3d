"""The BGP mode: codec (bytes <-> messages), fsm (the RFC 4271 session), routes (what a node
announces), session (the asyncio adapter) and speaker (the daemon). See docs/bgp.md."""
