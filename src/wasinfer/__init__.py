"""wasinfer: compile trained models into self-contained WebAssembly modules and serve them."""

__version__ = "0.1.0"
