"""Fan-out: one encoded stream per codec, delivered to every viewer of that codec."""
