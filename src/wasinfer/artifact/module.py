"""A compiled module as the API hands it out (`wasinfer.Module`): its own file so that loading one (the base
install: no onnx) never imports the converter that makes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wasinfer.artifact.metadata import Metadata
from wasinfer.fileio import atomic_write


@dataclass
class ConvertResult:
    """A compiled module (`wasinfer.Module`): its bytes, its metadata, and what compiling it found."""

    wasm: bytes
    metadata: Metadata
    stats: dict[str, object] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the module to `path`, whole or not at all."""
        atomic_write(Path(path), self.wasm)
