"""The npm package in js/ against the Python runtime: the same modules, the same outputs, the same errors.

Python compiles a few modules (a static CNN, one with symbolic dims and one whose symbolic dim takes only
multiples, NonZero's and TopK's run-time output shapes, an If whose branch is refused at run time, the demo
digits model, a sequence input fed as the tensors that carry it) and writes each with its inputs, wasmtime's
outputs on the plain SIMD128 code and the messages of the InputErrors the runtime raises for bad inputs (and of
the ModelFault where the module traps), as raw files and a manifest (js/test/parity.test.js reads it, named by
WASINFER_PARITY). Then `node --test` runs the package's own tests on them: outputs bit for bit, errors word for word.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.artifact.engines import JS, NODE, PLAIN, SymbolicCase, cnn_case, fixed_case, requires_node
from tests.artifact.test_real_models import _branch_for_other_sizes
from tests.hostile import string_input_module, trapping_start_module
from wasinfer.artifact import convert_onnx
from wasinfer.runtime import InputError, ModelFault, WasmModel, make_engine

PACKAGE = JS.parents[1] / "js"
RELAXED = make_engine(interruptible=False, relaxed_simd=True)
NPM = shutil.which("npm")
Feeds = dict[str, np.ndarray]


def _one_node(op: str, inputs: dict[str, tuple[tuple[int, ...], int]], outputs: dict[str, int],
              **attributes: int) -> onnx.ModelProto:
    node = helper.make_node(op, list(inputs), list(outputs))
    node.attribute.extend(helper.make_attribute(key, value) for key, value in attributes.items())
    graph = helper.make_graph([node], op.lower(),
                              [helper.make_tensor_value_info(n, t, list(s)) for n, (s, t) in inputs.items()],
                              [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _demo() -> tuple[bytes, list[Feeds]]:
    from wasinfer.registry.demo import build_demo_model

    demo = build_demo_model()
    return convert_onnx(onnx.load_from_string(demo.onnx), max_batch=8).wasm, [
        {"input": demo.x_test[:1]}, {"input": demo.x_test[1:9]}]


@dataclass
class Module:
    """A module and what the JS test runs it on: feeds that run, feeds the runtime refuses with an InputError
    (ours, or the module's own run_errors), and feeds on which the module traps (a ModelFault)."""

    wasm: bytes
    good: list[Feeds]
    bad: list[Feeds] = field(default_factory=list)
    faulty: list[Feeds] = field(default_factory=list)


def _modules() -> dict[str, Module]:
    rng = np.random.default_rng(3)
    cnn = cnn_case()
    x = cnn.inputs(2)["x"]
    symbolic = SymbolicCase()
    stepped = convert_onnx(SymbolicCase(masked=False).model, input_shapes={"x": (1, 3, 16, 96)},
                           input_ranges={"x": {2: (12, 16), 3: (32, 96, 32)}}).wasm
    nonzero = _one_node("NonZero", {"x": ((4, 6), TensorProto.FLOAT)}, {"y": TensorProto.INT64})
    topk = _one_node("TopK", {"x": ((3, 7), TensorProto.FLOAT), "k": ((1,), TensorProto.INT64)},
                     {"values": TensorProto.FLOAT, "indices": TensorProto.INT64}, axis=1)
    sparse = rng.standard_normal((4, 6)).astype(np.float32) * (rng.random((4, 6)) < 0.3)
    ranks = rng.permutation(21).reshape(3, 7).astype(np.float32)
    taken = np.abs(rng.standard_normal((2, 3))).astype(np.float32) + 0.1
    demo, digits = _demo()
    halves = (rng.standard_normal((2, 5)) * 6).astype(ml_dtypes.bfloat16)
    return {
        "cnn": Module(convert_onnx(cnn.model, max_batch=cnn.max_batch).wasm, [cnn.inputs(1), cnn.inputs(4)], [
            {}, {"x": x, "y": x}, {"x": x.astype(np.float64)}, {"x": x[0]}, {"x": cnn.inputs(4)["x"][:, :, :7]},
            {"x": np.concatenate([x, x, x])}]),
        "fixed": Module(convert_onnx(fixed_case().model).wasm, [fixed_case().inputs(1)],
                        [{"x": np.ones((3, 2), np.float32)}]),
        "symbolic": Module(symbolic.convert(),
                           [symbolic.inputs(16, 100), symbolic.inputs(12, 8), symbolic.inputs(13, 41)],
                           [symbolic.inputs(16, 101), symbolic.inputs(11, 40),
                            {"x": symbolic.inputs(12, 40)["x"], "mask": symbolic.inputs(12, 41)["mask"]},
                            {"x": symbolic.inputs(12, 40)["x"][0], "mask": symbolic.inputs(12, 40)["mask"]}]),
        "stepped": Module(stepped, [{"x": SymbolicCase(masked=False).inputs(12, 64)["x"]}],
                          [{"x": SymbolicCase(masked=False).inputs(12, 40)["x"]}]),
        "nonzero": Module(convert_onnx(nonzero).wasm, [{"x": sparse}, {"x": np.zeros((4, 6), np.float32)}]),
        # k past the axis traps (`unreachable`), as ONNX Runtime fails such a run
        "topk": Module(convert_onnx(topk).wasm, [{"x": ranks, "k": np.array([k], np.int64)} for k in (0, 3, 7)],
                       [{"x": ranks, "k": np.array([3], np.int32)}], [{"x": ranks, "k": np.array([8], np.int64)}]),
        # wasinfer_run returns 2 + i for inputs that take the If's branch written for other sizes: run_errors[i]
        "branch": Module(convert_onnx(_branch_for_other_sizes(), {"x": (2, 3)}).wasm, [{"x": taken}], [{"x": -taken}]),
        "digits": Module(demo, digits),
        # bfloat16 in (raw bits in a Uint16Array), float8 and int4 out (one per byte in a Uint8Array)
        "narrow": Module(convert_onnx(_narrow_model()).wasm, [{"x": halves}], [{"x": halves.astype(np.float32)}]),
        # a sequence input (--sequence s=1..3): the package feeds the tensors that carry it (docs/abi.md), and a
        # count outside the range is the module's own run error, in the same words
        "sequence": Module(convert_onnx(_sequence_model(), sequences={"s": (1, 3)}).wasm,
                           [_sequence_feeds(rng, 1), _sequence_feeds(rng, 3)], [_sequence_feeds(rng, 4)]),
    }


def _sequence_model() -> onnx.ModelProto:
    """SequenceLength and the first element of a sequence input: tensor outputs."""
    elements = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"]),
                               helper.make_node("SequenceAt", ["s", "zero"], ["first"])], "sequence",
                              [helper.make_value_info("s", elements)],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                               helper.make_tensor_value_info("first", TensorProto.FLOAT, [2])],
                              [onnx.numpy_helper.from_array(np.array(0, np.int64), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _sequence_feeds(rng: np.random.Generator, count: int) -> Feeds:
    """The carrying tensors of a sequence of `count` tensors: three element slots and the count."""
    return {**{f"s.{i}": rng.standard_normal(2).astype(np.float32) for i in range(3)},
            "s.count": np.array(count, np.int64)}


def _narrow_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Transpose", ["x"], ["t"]),
             helper.make_node("Cast", ["t"], ["f8"], to=TensorProto.FLOAT8E4M3FN),
             helper.make_node("Cast", ["x"], ["i4"], to=TensorProto.INT4)]
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 5])],
                              [helper.make_tensor_value_info("t", TensorProto.BFLOAT16, [5, 2]),
                               helper.make_tensor_value_info("f8", TensorProto.FLOAT8E4M3FN, [5, 2]),
                               helper.make_tensor_value_info("i4", TensorProto.INT4, [2, 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _tensors(directory: Path, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Each array as a raw file (C order, little-endian) and what the JS test needs to read it back."""
    described = {}
    for name, array in arrays.items():
        file = f"{prefix}-{name}.bin"
        (directory / file).write_bytes(np.ascontiguousarray(array).tobytes())
        described[name] = {"file": file, "dtype": str(array.dtype), "shape": list(array.shape)}
    return described


def _refusal(run: Callable[[Feeds], Any], feeds: Feeds, error: type[Exception] = InputError) -> str:
    with pytest.raises(error) as refused:
        run(feeds)
    return str(refused.value)


def write_parity_set(directory: Path) -> dict[str, Any]:
    """The modules, their inputs and wasmtime's outputs and errors under `directory`, listed in manifest.json."""
    manifest: dict[str, Any] = {"modules": []}
    for name, module in _modules().items():
        (directory / f"{name}.wasm").write_bytes(module.wasm)
        plain, relaxed = WasmModel(module.wasm, PLAIN), WasmModel(module.wasm, RELAXED)
        entry: dict[str, Any] = {
            "name": name, "file": f"{name}.wasm",
            "inputs": [vars(spec) for spec in plain.inputs], "outputs": [vars(spec) for spec in plain.outputs],
            "runs": [{"feeds": _tensors(directory, f"{name}-{i}-in", feeds),
                      "outputs": _tensors(directory, f"{name}-{i}-out", plain.run(feeds)),
                      "relaxed": _tensors(directory, f"{name}-{i}-relaxed", relaxed.run(feeds))}
                     for i, feeds in enumerate(module.good)],
            "errors": [{"feeds": _tensors(directory, f"{name}-{i}-bad", feeds), "message": _refusal(plain.run, feeds)}
                       for i, feeds in enumerate(module.bad)],
            "faults": [{"feeds": _tensors(directory, f"{name}-{i}-faulty", feeds),
                        "message": _refusal(WasmModel(module.wasm, PLAIN).run, feeds, ModelFault)}
                       for i, feeds in enumerate(module.faulty)]}
        manifest["modules"].append(entry)
    # modules that no run should reach: the runtime's reason for refusing each at load
    for name, wasm in (("strings", string_input_module()), ("trapstart", trapping_start_module())):
        (directory / f"{name}.wasm").write_bytes(wasm)
        with pytest.raises((ValueError, ModelFault)) as refused:
            WasmModel(wasm, PLAIN)
        manifest.setdefault("refused", []).append({"file": f"{name}.wasm", "error": type(refused.value).__name__,
                                                   "message": str(refused.value)})
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def node_test(parity: Path | None, *flags: str) -> subprocess.CompletedProcess[str]:
    """`node --test` on js/test/ (what `npm test` runs), with WASINFER_PARITY naming the parity set."""
    assert NODE is not None
    env = {k: v for k, v in os.environ.items() if k != "WASINFER_PARITY"}
    if parity is not None:
        env["WASINFER_PARITY"] = str(parity)
    files = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "test").glob("*.test.js"))
    return subprocess.run([NODE, *flags, "--test", "--test-reporter=tap", *files], cwd=PACKAGE, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """node --test's closing counts in its TAP report (# pass 12, # fail 0, ...)."""
    counts = {}
    for line in result.stdout.splitlines():
        words = line.removeprefix("# ").split()
        if len(words) == 2 and words[0] in ("tests", "pass", "fail", "skipped") and words[1].isdigit():
            counts[words[0]] = int(words[1])
    return counts


@requires_node
def test_the_package_matches_the_python_runtime(tmp_path: Path) -> None:
    """Every module's inputs/outputs specs, every run's outputs bit for bit, every refusal's message, in Node."""
    manifest = write_parity_set(tmp_path)
    assert sum(len(m["errors"]) for m in manifest["modules"]) >= 10
    result = node_test(tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = _summary(result)
    assert counts.get("fail") == 0 and counts.get("skipped") == 0, counts
    assert "parity: 10 modules" in result.stdout, result.stdout[-3000:]


@requires_node
def test_the_relaxed_simd_variant_runs_where_the_engine_has_it(tmp_path: Path) -> None:
    """With V8's relaxed SIMD on, load(..., {relaxedSimd: true}) swaps in the variant's code: outputs close to the
    runtime's relaxed ones (fused multiply-add, the last bits may differ), and the plain code still bit-equal."""
    write_parity_set(tmp_path)
    result = node_test(tmp_path, "--experimental-wasm-relaxed-simd")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "relaxed simd: on" in result.stdout, result.stdout[-3000:]
    assert _summary(result).get("skipped") == 0


@requires_node
def test_the_package_s_own_tests_run_without_a_parity_set() -> None:
    """`npm test` on its own (no Python): the parity tests skip saying why, the rest pass."""
    result = node_test(None)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "WASINFER_PARITY is not set" in result.stdout


@requires_node
@pytest.mark.skipif(NPM is None, reason="npm is not installed (Debian's npm package)")
def test_npm_pack_makes_a_package_that_imports_by_name(tmp_path: Path) -> None:
    """What `npm pack` puts in the tarball is the runtime, its types and README, and an app that has it under
    node_modules imports "wasinfer" and "wasinfer/worker" by name (package.json's "exports") and runs a model."""
    assert NPM is not None and NODE is not None
    packed = subprocess.run([NPM, "pack", "--json", "--pack-destination", str(tmp_path)], cwd=PACKAGE,
                            capture_output=True, text=True, timeout=120, check=True)
    [report] = json.loads(packed.stdout)
    assert sorted(f["path"] for f in report["files"]) == ["README.md", "index.d.ts", "index.js", "package.json",
                                                           "worker-thread.js", "worker.d.ts", "worker.js"]
    app = tmp_path / "app"
    with tarfile.open(tmp_path / report["filename"]) as tarball:
        tarball.extractall(app / "node_modules" / "wasinfer", filter=lambda member, _: member.replace(
            name=member.name.removeprefix("package/")))
    cnn = cnn_case()
    wasm = convert_onnx(cnn.model, max_batch=cnn.max_batch).wasm
    feeds = cnn.inputs(3)
    (app / "model.wasm").write_bytes(wasm)
    (app / "x.bin").write_bytes(feeds["x"].tobytes())
    (app / "main.mjs").write_text(
        'import { readFileSync } from "node:fs";\n'
        'import { load } from "wasinfer";\n'
        'import { createWorkerModel } from "wasinfer/worker";\n'
        'const model = await load(readFileSync("model.wasm"));\n'
        'const raw = readFileSync("x.bin");  // a Buffer may be a view into a shared pool\n'
        'const x = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);\n'
        'const { label } = await model.run({ x: { data: x, shape: [3, 1, 8, 8] } });\n'
        'console.log(JSON.stringify({ label: Array.from(label.data, Number), worker: typeof createWorkerModel }));\n')
    result = subprocess.run([NODE, "main.mjs"], cwd=app, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"label": WasmModel(wasm, PLAIN).run(feeds)["label"].tolist(),
                                         "worker": "function"}
