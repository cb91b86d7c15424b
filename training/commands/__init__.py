"""One module per CLI command; heavy libraries are imported inside the command functions."""
