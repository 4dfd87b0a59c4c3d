"""The lab's virtual network: namespaces and links, the LAN's shape, and the client's probes."""
