"""Where models live: the local store, OCI registries, and the built-in demo model."""
