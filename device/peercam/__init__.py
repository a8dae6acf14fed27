"""peercam: a WebRTC camera appliance that encodes once and fans out to every viewer."""

__version__ = "0.1.0"
