"""Stage 6, serve: the online store filled and checked against the offline store, the newest bar scored."""
