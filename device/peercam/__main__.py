from peercam.cli import entry

entry()
