"""Motion detection on small grey pictures taken from the camera's raw frames."""
