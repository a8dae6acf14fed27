"""The data channel on each viewer's peer connection (server.py)."""
