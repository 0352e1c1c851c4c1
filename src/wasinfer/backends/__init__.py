"""Code generators: each sub-package renders the compiler's lowered graph into one target's bytes.

`wasm/` is the only target today; a second one (WGSL, C) would be a sibling folder with the
same shape: a writer for its format, math helpers, and one emitter per op family.
"""
