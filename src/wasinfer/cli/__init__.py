"""The `wasinfer` command line."""
