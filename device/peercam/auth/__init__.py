"""Who may do what: users, tokens, login sessions and the roles they carry."""
