"""One module per op family; each registers its generators with `@kernel` on import."""
