"""benchmarks/real_models.py without the network: the manifest's inputs, and taking a pinned file out of an archive.

Nothing here fetches: the archives are built in the test, as a wheel (zip) and an npm tarball (tgz) lay them out.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.scripts import load


def _real_models() -> Any:
    return load("benchmarks/real_models.py")


rm = _real_models()
MODEL_BYTES = b"\x08\x07" + bytes(range(256)) * 4  # stands for an .onnx file: only its digest matters here
MODEL_SHA = hashlib.sha256(MODEL_BYTES).hexdigest()


def test_every_model_is_pinned_and_gets_inputs_of_its_declared_shapes_and_types() -> None:
    assert len(rm.MODELS) >= 8
    assert len({m.name for m in rm.MODELS}) == len(rm.MODELS)
    for model in rm.MODELS:
        assert re.fullmatch(r"[0-9a-f]{64}", model.sha256), model.name
        assert model.package.registry in ("pypi", "npm") and re.fullmatch(r"[0-9][0-9A-Za-z.]*",
                                                                           model.package.version), model.name
        assert not model.member.startswith("/") and ".." not in model.member.split("/"), model.name
        feeds = rm.feeds(model)
        assert list(feeds) == list(model.inputs), model.name
        for name, array in feeds.items():
            assert array.shape == model.inputs[name], (model.name, name)
            assert array.dtype == np.dtype(model.dtypes.get(name, "float32")), (model.name, name)
            assert np.isfinite(array).all(), (model.name, name)
        again = rm.feeds(model)  # seeded per model: a --models filter feeds the same as a full run
        assert all(np.array_equal(feeds[k], again[k]) for k in feeds), model.name


def test_inputs_are_not_uniform_noise() -> None:
    """Realistic inputs have structure: a page is mostly paper, audio has silent gaps between syllables."""
    det = next(m for m in rm.MODELS if m.name == "ppocr_det")
    page = rm.page(*det.inputs["x"][2:], np.random.default_rng(0), line_height=18)
    assert 0.6 < float((page > 200).mean()) < 0.97  # paper, with dark text lines on it
    audio = rm.speech(16_000, np.random.default_rng(0))
    assert float(np.abs(audio).max()) <= 1.0
    assert float((np.abs(audio) < 0.05).mean()) > 0.3  # the gaps between syllables


def test_magika_features_take_the_first_and_last_bytes_and_pad_short_content_in_the_middle() -> None:
    long = rm.magika_bytes(b"  " + bytes(range(65, 91)) * 100 + b"\n", 2048)
    assert long.shape == (1, 2048) and long.dtype == np.int32
    assert long[0, 0] == 65 and long[0, -1] == 90  # stripped of the leading spaces and the trailing newline
    short = rm.magika_bytes(b"print(1)\n", 2048)  # the beginning is only left-stripped, the end right-stripped
    assert list(short[0, :9]) == list(b"print(1)\n") and list(short[0, -8:]) == list(b"print(1)")
    assert (short[0, 9:-8] == 256).all()


def _model(registry: str = "pypi", member: str = "pkg/models/model.onnx", sha: str = MODEL_SHA) -> Any:
    return rm.RealModel("toy", "test", rm.Package(registry, "toy-pkg", "1.0", "MIT"), member, sha,
                        {"x": (1, 4)}, "embeddings", "test input")


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tarball:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarball.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["wheel", "npm"])
def test_a_pinned_member_is_taken_out_of_the_archive_and_nothing_else(tmp_path: Path, kind: str) -> None:
    members = {"pkg/models/model.onnx": MODEL_BYTES, "pkg/other.onnx": b"not wanted", "pkg/__init__.py": b""}
    if kind == "wheel":
        archive = _wheel(tmp_path / "toy_pkg-1.0-py3-none-any.whl", members)
        model = _model()
    else:
        archive = _tarball(tmp_path / "toy-pkg-1.0.tgz", {f"package/{k}": v for k, v in members.items()})
        model = _model("npm", "package/pkg/models/model.onnx")
    cache = tmp_path / "cache"
    path = rm.install_member(model, archive, cache)
    assert path == model.path(cache) and path.read_bytes() == MODEL_BYTES
    assert rm.is_fetched(model, cache)
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == ["model.onnx"]


def test_a_member_with_another_digest_is_refused_and_not_written(tmp_path: Path) -> None:
    archive = _wheel(tmp_path / "toy_pkg-1.0-py3-none-any.whl", {"pkg/models/model.onnx": MODEL_BYTES + b"!"})
    model, cache = _model(), tmp_path / "cache"
    with pytest.raises(rm.FetchError, match=f"not the pinned {MODEL_SHA}"):
        rm.install_member(model, archive, cache)
    assert not model.path(cache).exists() and not rm.is_fetched(model, cache)


def test_a_missing_member_is_named(tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "toy-pkg-1.0.tgz", {"package/README.md": b"hi"})
    with pytest.raises(rm.FetchError, match=re.escape("toy-pkg-1.0.tgz has no package/pkg/models/model.onnx")):
        rm.install_member(_model("npm", "package/pkg/models/model.onnx"), archive, tmp_path / "cache")


def test_fetch_downloads_nothing_for_verified_files_and_reports_what_it_cannot_get(tmp_path: Path) -> None:
    """A registry no client serves stands for a download that fails: a verified file never reaches it."""
    cached, wrong = _model("nowhere"), _model("nowhere", member="pkg/models/other.onnx")
    cached.path(tmp_path).parent.mkdir(parents=True)
    cached.path(tmp_path).write_bytes(MODEL_BYTES)
    wrong.path(tmp_path).write_bytes(b"stale")  # present but not the pinned file: fetched again, and that fails
    found = rm.fetch([cached, wrong], tmp_path, log=lambda line: None)
    assert found[cached.name] == cached.path(tmp_path)
    found = rm.fetch([wrong], tmp_path, log=lambda line: None)
    assert isinstance(found[wrong.name], rm.FetchError) and "unknown registry 'nowhere'" in str(found[wrong.name])
