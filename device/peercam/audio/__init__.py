"""Sound both ways: the microphone (ALSA capture) and talkback (ALSA playback)."""
