"""`python -m wasinfer.runtime.compile_apart TAG PATH`: compile the WebAssembly module on stdin for the engine
TAG names (wasm.engine_tag) and write the compiled module to PATH, for CompiledCache(compile_apart=True).

A process of its own so that the server that asked never has Cranelift in its memory: it maps the file
this writes, as it maps any compiled module from its cache. Exit 0 when PATH is written; 1 with the reason
on stderr when the module does not compile (the caller then compiles it itself, for its own error); 2 when
TAG is no engine this wasinfer makes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wasinfer.fileio import atomic_write
from wasinfer.runtime.interrupt import REWRITE_TAG
from wasinfer.runtime.wasm import compile_module, engine_tag, make_engine


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m wasinfer.runtime.compile_apart TAG PATH < module.wasm", file=sys.stderr)
        return 2
    tag, path = argv
    interruptible, relaxed_simd = tag.endswith(f"|{REWRITE_TAG}"), "|relaxed" in tag
    if engine_tag(interruptible, relaxed_simd) != tag:
        print(f"{tag!r} is not an engine tag of this wasinfer", file=sys.stderr)
        return 2
    wasm = sys.stdin.buffer.read()
    try:
        module = compile_module(make_engine(interruptible, relaxed_simd), wasm)
    except Exception as exc:  # wasmtime's error or UnverifiableModule: the caller compiles it again, for its error
        print(exc, file=sys.stderr)
        return 1
    atomic_write(Path(path), bytes(module.serialize()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
