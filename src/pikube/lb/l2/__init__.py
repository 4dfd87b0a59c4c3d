"""Layer 2 announcement: ARP and NDP codecs, responders and gratuitous announcements."""
