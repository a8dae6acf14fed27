"""What the visitor hears at the door: a ring-back tone, and a message when nobody answers."""
