"""Running as a system service: what the daemon tells systemd."""
