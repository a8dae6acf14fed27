"""Event clips: pre-roll of the shared encoded stream, written to MP4 on a trigger."""
