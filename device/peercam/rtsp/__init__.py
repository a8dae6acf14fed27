"""An RTSP server for NVRs (issue 21), fed from the shared encoded packets."""
