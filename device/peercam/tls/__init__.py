"""HTTPS for the daemon: the certificate it serves, generated when none is given."""
