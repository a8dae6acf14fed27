"""SIP: the doorbell as a caller of the house's phones (issue 27)."""
