"""One module per benchmark case; each returns a dict of figures for the report."""
