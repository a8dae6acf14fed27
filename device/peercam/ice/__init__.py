"""ICE servers: which the daemon and each viewer use, and TURN credentials for them."""
