"""WebRTC: negotiating with each viewer and sending it the shared encoded frames."""
