# The viewer page's files, installed as the package data peercam.webroot.
