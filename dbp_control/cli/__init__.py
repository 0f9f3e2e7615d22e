"""The `dbp` command line."""
