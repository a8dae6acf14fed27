"""Encoding once per codec: encoder backends and the shared encoder that drives them."""
