"""Where frames come from: cameras, microphones, and the built-in test pattern and tone."""
