"""Lowering: IR nodes → backend-neutral plans, the decisions a kernel makes before it writes code.

A plan says *what loops run over what*: how a convolution is tiled (rows per column-buffer
tile, which tiles share one copy of code in a run-time loop, whether it runs as a direct GEMM,
a depthwise window or Winograd), which outputs of a sliding window read inside the input,
how constant weights are laid out (GEMM panels, Winograd-transformed, per-gate transposes),
the interpolation tables of Resize, and how many bytes of scratch each needs. A plan is a
frozen dataclass or plain numpy arrays computed from the node and the static graph alone:
no instruction, no address, no register.

Rendering a plan into code is a backend's job (`wasinfer.backends.wasm.emitters`). Keeping
the two apart means a second target (WGSL, C) reuses every tiling and layout decision and
only writes its own emitters, the decisions can be unit-tested against numpy without
compiling anything, and a plan's sizes (scratch bytes, tile counts) are known to the memory
planner before any code exists. Imports flow lowering → passes → frontends → ir (and numpy);
nothing here may import a backend.
"""
