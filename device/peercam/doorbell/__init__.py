"""The doorbell: a ring (button, API, command line), the call that answers it, the door."""
