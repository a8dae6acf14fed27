"""Scale-out: the one encoded stream pushed to a media server that fans it out further."""
