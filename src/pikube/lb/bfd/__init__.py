"""BFD (RFC 5880 asynchronous mode, RFC 5881 single hop): codec, fsm and the UDP adapter."""
