"""One module per command family: each command body parses, calls the core, renders."""
