"""The model repository on disk: `<root>/<model>/<version>/model.{wasm,onnx,tflite}`, as Triton lays it out.

Versions are positive integer directory names; the highest is a model's default. The file's
name picks the backend: `model.wasm` runs in wasmtime, `model.onnx` in ONNX Runtime,
`model.tflite` in LiteRT. A version directory holding several serves the first of wasm, onnx,
tflite: the compiled artifact is the point of wasinfer, and ONNX Runtime, unlike the LiteRT
interpreter, can use a GPU (CUDA) and serves one shared session instead of one interpreter per
concurrent request. The disk is read on demand (a model that appears is found by the first
request for it), never cached here: the model manager decides when a change takes effect.

A version directory may hold a `version` file: the name the version is served under (metadata's
`versions`, `/v2/models/X/versions/NAME/...`, metrics labels), such as the `1.1.0` a desired state
asked for (updater.py writes it); the directory keeps its integer, which orders the versions.
A directory whose name is not a positive integer (`v1/`) is not a version, as in Triton: it is
logged once, naming it, rather than skipped in silence.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("wasinfer.serving")

MODEL_FILES = ("model.wasm", "model.onnx", "model.tflite")  # in order of preference
# At most 255 characters: longer is no file name (ENAMETOOLONG), so no model, and a request naming one is a 404.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
VERSION_FILE = "version"  # in a version directory: the name that version is served under
# A version's name: a release's ("1.1.0", "v2.0.0-rc.1", "2024-06-01"), one path segment of a URL as it is.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int  # the directory's number: orders the versions (the highest is the default)
    path: Path
    named: str = ""  # its `version` file's name; "": it is served as its number

    @property
    def version_name(self) -> str:
        """The version as clients see it: its `version` file's name, else its number."""
        return self.named or str(self.version)

    @property
    def format(self) -> str:
        """The backend's key: "wasm", "onnx" or "tflite" (the file's suffix)."""
        return self.path.suffix.lstrip(".")


class Repository:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._warned: set[Path] = set()  # what was logged once (not a version, a bad version file)
        self._lock = threading.Lock()

    def _warn_once(self, path: Path, message: str, *args: object) -> None:
        with self._lock:
            if path in self._warned:
                return
            self._warned.add(path)
        log.warning(message, *args)

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
            if not (entry.name.isascii() and entry.name.isdigit()) or int(entry.name) < 1:
                # hidden ones are staging (updater.py) or tools' own; files are configs and labels
                if not entry.name.startswith(".") and entry.is_dir():
                    self._warn_once(entry, "model %s: directory %s is not a version (a version directory is "
                                    "named by a positive integer, e.g. 1/), so it is not served", name, entry)
                continue
            if not entry.is_dir():
                continue
            for file in MODEL_FILES:
                if (entry / file).is_file():
                    found[int(entry.name)] = ModelVersion(name, int(entry.name), entry / file,
                                                          self._version_name(entry))
                    break
        return dict(sorted(found.items()))

    def _version_name(self, directory: Path) -> str:
        """The `version` file's name, "" without one (or with one that is no version name, logged once)."""
        path = directory / VERSION_FILE
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            self._warn_once(path, "%s: cannot read it (%s); version %s is served as its number", path, exc,
                            directory.name)
            return ""
        if VERSION_NAME.fullmatch(text) is None:
            self._warn_once(path, "%s: %r is not a version name (letters, digits, '.', '_', '+', '-'; at most "
                            "64); version %s is served as its number", path, text[:80], directory.name)
            return ""
        return text


CONFIG_FILES = ("config.pbtxt", "config.json")  # a model's configuration, beside its version directories


def holds_model(directory: Path) -> bool:
    """Whether `directory` holds a model file itself (a KServe model directory) rather than a repository's
    <name>/<version>/ layout."""
    return any((directory / file).is_file() for file in MODEL_FILES)


def single_model_repository(directory: Path, name: str, root: Path) -> Path:
    """A repository at `root` in which `directory` is version 1 of model `name`: how `serve --model-name`
    serves KServe's model directory (/mnt/models: the files of the storageUri, model.wasm at its top, with the
    InferenceService's name on the command line, not in the path). The version directory is a link to
    `directory`, so nothing is copied and the storage's files stay where KServe mounted them; the model's
    configuration (config.pbtxt / config.json) is linked one level up, where the repository reads it.

    Built anew on every start: the root is the server's own (under $WASINFER_HOME), never the storage."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"--model-name {name!r}: a model name is letters, digits, '_', '.' and '-' (not starting "
                         "with '.' or '-'), at most 255 characters")
    if not holds_model(directory):
        raise ValueError(f"{directory}: no {', '.join(MODEL_FILES[:-1])} or {MODEL_FILES[-1]} in it to serve as "
                         f"model {name}")
    model = root / name
    if root.exists():  # the links of an earlier start; rmtree unlinks a link, never what it points at
        shutil.rmtree(root)
    model.mkdir(parents=True)
    (model / "1").symlink_to(directory.resolve(), target_is_directory=True)
    for config in CONFIG_FILES:
        if (directory / config).is_file():
            (model / config).symlink_to((directory / config).resolve())
    return root
