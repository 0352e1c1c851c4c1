"""The compiled-code cache shared by the worker processes of a node: a module is compiled once, whoever asks first.

flock locks belong to open file descriptions, so threads that each open the lock file contend for it exactly as
processes do; the threads here stand for `serve --workers` processes starting the same model at once.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import wasmtime

import wasinfer.runtime.wasm as wasm_runtime
from tests.serving.conftest import SCALE, scale_model
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import read_metadata
from wasinfer.runtime import CompiledCache, WasmModel, make_engine


def test_loads_racing_on_an_empty_cache_compile_the_module_once(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    wasm = convert_onnx(scale_model(SCALE[1]), max_batch=4, name="scale").wasm
    engine = make_engine()
    compiles: list[int] = []
    real_compile = wasm_runtime.compile_module

    def counted(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        compiles.append(1)
        return real_compile(engine, wasm)

    monkeypatch.setattr(wasm_runtime, "compile_module", counted)
    start = threading.Barrier(4)
    modules: list[wasmtime.Module] = []

    def load() -> None:
        start.wait(timeout=30)
        modules.append(CompiledCache(tmp_path / "cache").load(engine, wasm))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(modules) == 4
    assert len(compiles) == 1  # the others waited on the lock and mapped the first one's file
    assert len(list((tmp_path / "cache").glob("*.cwasm"))) == 1
    for module in modules:
        model = WasmModel(b"", engine, compiled=(module, read_metadata(wasm)))
        np.testing.assert_array_equal(model.run({"x": np.ones((1, 4), np.float32)})["y"], [SCALE[1]])
