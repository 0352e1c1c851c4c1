"""Lowering: the backend-neutral plans (tiles, windows, weight layouts, scratch), checked against numpy."""
