"""HTTP handlers: WHEP signaling, health and metrics, and the viewer page."""
