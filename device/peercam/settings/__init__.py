"""Settings changed while the camera runs: peercam.toml edited in place (the one
source of truth), what each change interrupts, and the form the page shows."""
