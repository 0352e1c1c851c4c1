"""What every `wasinfer` sub-command shares: where it prints, its exit codes, the home directory, and how a module's
tensors are shown.

A module of its own so that each command module imports it and `main` imports the command modules,
with no import running back up to `main`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from wasinfer.runtime import model_info

if TYPE_CHECKING:
    from wasinfer.artifact.metadata import Metadata
    from wasinfer.runtime import TensorSpec

# Exit codes: 0 ok, 1 a failed check, 2 bad input or an unsupported model (nothing written).
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
console = Console()
errors = Console(stderr=True)


def error(message: str) -> None:
    """`error: MESSAGE` on stderr, red on a terminal and plain text elsewhere. The message is text, never markup:
    a path or a reference with brackets in it (`/data/[v2]/m.onnx`) is printed as it is, and one line stays one
    line however long (a digest, a path) so that it can be copied."""
    errors.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def warning(message: str) -> None:
    """`warning: MESSAGE` on stderr, as `error` prints."""
    errors.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)


def wasinfer_home() -> Path:
    return Path(os.environ.get("WASINFER_HOME", Path.home() / ".wasinfer"))


def signature(metadata: Metadata) -> str:
    """A module's tensors in one line, `x float32 [1, 3, 48, 32..1280] → y float32 [1, 4, 16..640]`: N for the
    batch, a symbolic dim (ABI version 3) as its range, ? for a dim each run decides (runtime/base.py)."""
    info = model_info(metadata)

    def tensors(specs: list[TensorSpec]) -> str:
        return ", ".join(f"{t.name} {t.dtype} {t.shown()}" for t in specs)

    return f"{tensors(info.inputs)} → {tensors(info.outputs)}"
