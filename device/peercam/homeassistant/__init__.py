"""Home Assistant over MQTT: discovery, the doorbell's events, and commands."""
