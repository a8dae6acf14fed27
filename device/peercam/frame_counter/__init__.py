"""An example output: counts the shared frames of each configured codec in /metrics."""
