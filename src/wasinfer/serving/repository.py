"""The model repository on disk: `<root>/<model>/<version>/model.{wasm,onnx,tflite}`, as Triton lays it out.

Versions are positive integer directory names; the highest is a model's default. The file's
name picks the backend: `model.wasm` runs in wasmtime, `model.onnx` in ONNX Runtime,
`model.tflite` in LiteRT. A version directory holding several serves the first of wasm, onnx,
tflite: the compiled artifact is the point of wasinfer, and ONNX Runtime, unlike the LiteRT
interpreter, can use a GPU (CUDA) and serves one shared session instead of one interpreter per
concurrent request. The disk is read on demand (a model that appears is found by the first
request for it), never cached here: the model manager decides when a change takes effect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MODEL_FILES = ("model.wasm", "model.onnx", "model.tflite")  # in order of preference
# At most 255 characters: longer is no file name (ENAMETOOLONG), so no model, and a request naming one is a 404.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path

    @property
    def format(self) -> str:
        """The backend's key: "wasm", "onnx" or "tflite" (the file's suffix)."""
        return self.path.suffix.lstrip(".")


class Repository:
    def __init__(self, root: Path):
        self.root = Path(root)

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _NAME.fullmatch(p.name) and self.versions(p.name))

    def versions(self, name: str) -> dict[int, ModelVersion]:
        """A model's servable versions by number; empty for an unknown (or unsafe) name."""
        if not _NAME.fullmatch(name):  # never let a request name walk out of the repository
            return {}
        directory = self.root / name
        if not directory.is_dir():
            return {}
        found = {}
        for entry in directory.iterdir():
            if not (entry.name.isascii() and entry.name.isdigit() and entry.is_dir()) or int(entry.name) < 1:
                continue
            for file in MODEL_FILES:
                if (entry / file).is_file():
                    found[int(entry.name)] = ModelVersion(name, int(entry.name), entry / file)
                    break
        return dict(sorted(found.items()))
