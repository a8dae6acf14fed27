"""Web Push: the household's phones and computers hear the bell with no page open."""
