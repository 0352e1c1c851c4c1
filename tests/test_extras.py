"""The base install (numpy, wasmtime, rich) runs modules, and a command whose extra is missing names it.

Each check runs in a process of its own in which every module an extra brings is refused on import (None in
sys.modules: what a base install looks like to the importer), so what the base install can do is tested
here, on this machine, without building a second environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.serving.conftest import scale_model
from wasinfer.artifact import convert_onnx
from wasinfer.extras import EXTRA_OF_MODULE

BLOCK = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in EXTRA_OF_MODULE)


def base_install(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "WASINFER_HOME": str(tmp_path / "home"),
                                             "PYTHONPATH": ":".join(sys.path)})


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "scale.wasm"
    path.write_bytes(convert_onnx(scale_model(np.full(4, 2.0, np.float32))).wasm)
    return path


def test_the_base_install_loads_and_runs_a_module(module: Path, tmp_path: Path) -> None:
    ran = base_install(f"import numpy as np, wasinfer\nmodel = wasinfer.load({str(module)!r})\n"
                       "print(model.run({'x': np.ones((1, 4), np.float32)})['y'].tolist())", tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip() == "[[2.0, 2.0, 2.0, 2.0]]", ran.stderr
    np.save(tmp_path / "x.npy", np.full((1, 4), 3.0, np.float32))
    ran = base_install("from wasinfer.cli.main import main\nsys.exit(main(['run', "
                       f"{str(module)!r}, '--input', 'x={tmp_path / 'x.npy'}']))", tmp_path)
    assert ran.returncode == 0 and "[6., 6., 6., 6.]" in ran.stdout, ran.stderr
    ran = base_install("from wasinfer.cli.main import main\nmain(['--help'])", tmp_path)
    assert "convert" in ran.stdout and "serve" in ran.stdout, ran.stderr  # every command is listed


@pytest.mark.parametrize(("argv", "extra"), [
    (["convert", "model.onnx"], "compiler"), (["validate", "m.wasm"], "compiler"), (["serve"], "serve"),
    (["push", "m.wasm", "m:1.0.0"], "registry"), (["keys", "generate"], "registry"),
    (["deploy", "render"], "registry"), (["demo"], "demo")])
def test_a_command_whose_extra_is_missing_names_it(argv: list[str], extra: str, module: Path, tmp_path: Path) -> None:
    for name in ("model.onnx", "m.wasm"):
        (tmp_path / name).write_bytes(module.read_bytes())
    ran = base_install(f"from wasinfer.cli.main import main\nsys.exit(main({argv!r}))", tmp_path)
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert f"pip install 'wasinfer[{extra}]'" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr


def test_compile_without_the_compiler_names_the_extra(tmp_path: Path) -> None:
    ran = base_install("import wasinfer\ntry:\n    wasinfer.compile('model.onnx')\nexcept ImportError as exc:\n"
                       "    print(exc)", tmp_path)
    assert "pip install 'wasinfer[compiler]'" in ran.stdout, ran.stderr


def test_a_served_model_whose_backend_extra_is_missing_fails_alone_naming_it(tmp_path: Path) -> None:
    """A server without onnxruntime (the compiler extra) serving a model.onnx beside a module: the ONNX model is
    unavailable saying which extra serves it; the module serves."""
    repository = tmp_path / "repository"
    (repository / "onnx" / "1").mkdir(parents=True)
    onnx.save(scale_model(np.full(4, 2.0, np.float32)), repository / "onnx" / "1" / "model.onnx")
    (repository / "wasm" / "1").mkdir(parents=True)
    (repository / "wasm" / "1" / "model.wasm").write_bytes(convert_onnx(scale_model(np.full(4, 3.0, np.float32))).wasm)
    code = f"""import sys
sys.modules['onnxruntime'] = None
import httpx
from pathlib import Path
from wasinfer.serving import Server, ServerConfig
server = Server(ServerConfig(Path({str(repository)!r}), host='127.0.0.1', http_port=0, grpc_port=None))
server.start(timeout=20)
try:
    body = {{'inputs': [{{'name': 'x', 'shape': [1, 4], 'datatype': 'FP32', 'data': [1, 1, 1, 1]}}]}}
    for name in ('onnx', 'wasm'):
        answer = httpx.post(f'http://127.0.0.1:{{server.http_port}}/v2/models/{{name}}/infer', json=body, timeout=30)
        print(name, answer.status_code, answer.text)
finally:
    server.stop(grace=1)
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "WASINFER_HOME": str(tmp_path / "home"),
                              "PYTHONPATH": ":".join(sys.path)})
    lines = dict(line.split(" ", 1) for line in ran.stdout.splitlines() if line.startswith(("onnx ", "wasm ")))
    assert lines["onnx"].startswith("503") and "model.onnx of model 'onnx'" in lines["onnx"], ran.stdout + ran.stderr
    assert "pip install 'wasinfer[compiler]'" in lines["onnx"]
    assert lines["wasm"].startswith("200") and "[3.0,3.0,3.0,3.0]" in lines["wasm"].replace(" ", "")
