"""The WASI command form: .npy on stdin → .npy on stdout, under Node's node:wasi and wasmtime's WASI.

Outputs must equal the ABI's (wasmtime, plain build) bit for bit, both engines must write the
same bytes, and bad inputs must end with status 2 and a message on stderr.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import wasmtime
from onnx import TensorProto, helper

from tests.artifact.engines import (
    CASES,
    JS,
    NODE,
    NODE_PROBLEM,
    PLAIN,
    Case,
    SymbolicCase,
    mlp_case,
    node,
    requires_node,
)
from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.runtime import WasmModel


def npy_stream(*arrays: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    out = io.BytesIO()
    for array in arrays:
        np.lib.format.write_array(out, array, version=version, allow_pickle=False)
    return out.getvalue()


def read_npy_stream(raw: bytes, count: int) -> list[np.ndarray]:
    stream = io.BytesIO(raw)
    arrays = [np.load(stream, allow_pickle=False) for _ in range(count)]
    assert stream.read() == b"", "bytes after the last output"
    return arrays


def run_wasmtime_wasi(wasm: bytes, stdin: bytes, tmp_path: Path) -> tuple[int, bytes, str]:
    """_start under wasmtime's WASI (stdin/stdout/stderr are files); returns exit status, stdout, stderr."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = {name: tmp_path / f"{name}.wasmtime" for name in ("stdin", "stdout", "stderr")}
    paths["stdin"].write_bytes(stdin)
    config = wasmtime.WasiConfig()
    config.stdin_file, config.stdout_file, config.stderr_file = (str(p) for p in paths.values())
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(config)
    instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
        status = 0
    except wasmtime.ExitTrap as exit_:
        status = exit_.code
    return status, paths["stdout"].read_bytes(), paths["stderr"].read_text()


def run_node_wasi(wasm: bytes, stdin: bytes, tmp_path: Path) -> tuple[int, bytes, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.wasm").write_bytes(wasm)
    (tmp_path / "stdin.node").write_bytes(stdin)
    result = node("wasi_run.mjs", tmp_path / "model.wasm", stdin=tmp_path / "stdin.node",
                  stdout=tmp_path / "stdout.node")
    return result.returncode, (tmp_path / "stdout.node").read_bytes(), result.stderr.decode()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_wasmtime_wasi_matches_the_abi(case: Case, tmp_path: Path) -> None:
    wasi = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    reference = WasmModel(convert_onnx(case.model, max_batch=case.max_batch).wasm, PLAIN)
    for batch in sorted({1, case.max_batch}):
        feeds = case.inputs(batch)
        status, stdout, stderr = run_wasmtime_wasi(wasi, npy_stream(*feeds.values()), tmp_path / str(batch))
        assert status == 0, stderr
        want = reference.run(feeds)
        got = read_npy_stream(stdout, len(want))
        for (name, expected), actual in zip(want.items(), got, strict=True):
            assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
            assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8)), name


@requires_node
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_wasi_writes_the_same_bytes_as_wasmtime(case: Case, tmp_path: Path) -> None:
    wasi = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    stdin = npy_stream(*case.inputs(case.max_batch).values())
    node_status, node_out, node_err = run_node_wasi(wasi, stdin, tmp_path)
    assert node_status == 0, node_err
    assert node_out == run_wasmtime_wasi(wasi, stdin, tmp_path)[1]


def test_output_headers_are_numpy_style_and_aligned(tmp_path: Path) -> None:
    case = CASES[1]  # cnn: a float32 (N, 10) and an int64 (N,) output
    wasm = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    _, stdout, _ = run_wasmtime_wasi(wasm, npy_stream(*case.inputs(3).values()), tmp_path)
    stream = io.BytesIO(stdout)
    for descr, shape in (("<f4", (3, 10)), ("<i8", (3,))):
        start = stream.tell()
        assert np.lib.format.read_magic(stream) == (1, 0)
        header = np.lib.format.read_array_header_1_0(stream)
        assert header == (shape, False, np.dtype(descr))
        assert (stream.tell() - start) % 64 == 0, "header padded to 64 bytes, as np.save writes it"
        stream.seek(int(np.prod(shape)) * np.dtype(descr).itemsize, io.SEEK_CUR)


def test_other_npy_writers_are_read(tmp_path: Path) -> None:
    """Format 2.0, double quotes, another key order, odd spacing: all valid .npy headers."""
    case = mlp_case()
    wasm = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    feeds = case.inputs(2)
    text = b'{"shape":(2 ,8  ,) , "fortran_order" :False,"descr":"<f4"}'
    hand_written = b"\x93NUMPY\x01\x00" + len(text + b"\n").to_bytes(2, "little") + text + b"\n" + feeds["x"].tobytes()
    assert np.array_equal(np.load(io.BytesIO(hand_written)), feeds["x"])  # numpy agrees it is valid
    stdin = hand_written + npy_stream(feeds["skip"], version=(2, 0))
    status, stdout, stderr = run_wasmtime_wasi(wasm, stdin, tmp_path)
    assert status == 0, stderr
    want = WasmModel(convert_onnx(case.model, max_batch=case.max_batch).wasm, PLAIN).run(feeds)
    for expected, actual in zip(want.values(), read_npy_stream(stdout, 2), strict=True):
        assert np.array_equal(actual, expected)


BAD_INPUTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "shape": (lambda: npy_stream(np.zeros((2, 7), np.float32), np.zeros((2, 5), np.float32)), "shape differs"),
    "dtype": (lambda: npy_stream(np.zeros((2, 8), np.float64), np.zeros((2, 5), np.float32)), "dtype differs"),
    "batch too large": (lambda: npy_stream(np.zeros((5, 8), np.float32), np.zeros((5, 5), np.float32)),
                        "out of range"),
    "batches differ": (lambda: npy_stream(np.zeros((2, 8), np.float32), np.zeros((3, 5), np.float32)),
                       "differs from an earlier input"),
    "fortran order": (lambda: npy_stream(np.asfortranarray(np.zeros((2, 8), np.float32)),
                                         np.zeros((2, 5), np.float32)), "fortran_order must be False"),
    "missing input": (lambda: npy_stream(np.zeros((2, 8), np.float32)), "stdin ended before this .npy"),
    "truncated data": (lambda: npy_stream(np.zeros((2, 8), np.float32), np.zeros((2, 5), np.float32))[:-4],
                       "stdin ended inside the tensor data"),
    "not npy": (lambda: b"x,skip\n1,2\n", "not a .npy file"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_exits_2_with_a_message(kind: str, tmp_path: Path) -> None:
    case = mlp_case()
    wasm = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    make, message = BAD_INPUTS[kind]
    status, stdout, stderr = run_wasmtime_wasi(wasm, make(), tmp_path)
    assert status == 2
    assert stdout == b""
    assert stderr.startswith("wasinfer: input ") and message in stderr, stderr


@requires_node
def test_node_wasi_wrong_shape_exits_2(tmp_path: Path) -> None:
    case = mlp_case()
    wasm = convert_onnx(case.model, max_batch=case.max_batch, wasi=True).wasm
    status, stdout, stderr = run_node_wasi(wasm, BAD_INPUTS["shape"][0](), tmp_path)
    assert status == 2 and stdout == b""
    assert "input 'x'" in stderr and "shape differs" in stderr and "'shape': (2, 7)" in stderr, stderr


def test_two_digit_batches(tmp_path: Path) -> None:
    """N is written into the output header at run time; 10 and 12 take two digits, 9 one."""
    case = mlp_case()
    wasm = convert_onnx(case.model, max_batch=12, wasi=True).wasm
    reference = WasmModel(convert_onnx(case.model, max_batch=12).wasm, PLAIN)
    for batch in (9, 10, 12):
        feeds = case.inputs(batch)
        status, stdout, stderr = run_wasmtime_wasi(wasm, npy_stream(*feeds.values()), tmp_path / str(batch))
        assert status == 0, stderr
        for expected, actual in zip(reference.run(feeds).values(), read_npy_stream(stdout, 2), strict=True):
            assert actual.shape == expected.shape and np.array_equal(actual, expected)


WASMTIME_COMMAND = """
import sys, wasmtime
config = wasmtime.WasiConfig()
config.inherit_stdin(); config.inherit_stdout(); config.inherit_stderr()
engine = wasmtime.Engine(); linker = wasmtime.Linker(engine); linker.define_wasi()
store = wasmtime.Store(engine); store.set_wasi(config)
instance = linker.instantiate(store, wasmtime.Module.from_file(engine, sys.argv[1]))
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as exit_:
    sys.exit(exit_.code)
"""


@pytest.mark.parametrize("engine", ["wasmtime", pytest.param("node", marks=requires_node)])
def test_pipes_deliver_in_pieces(engine: str, tmp_path: Path) -> None:
    """Through a pipe (64 KiB at a time) fd_read and fd_write move less than asked; _start must loop."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100_000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 100_000])]),
        opset_imports=[helper.make_opsetid("", 13)])
    (tmp_path / "model.wasm").write_bytes(convert_onnx(model, max_batch=3, wasi=True).wasm)
    x = np.random.default_rng(3).standard_normal((3, 100_000)).astype(np.float32)
    command = ([sys.executable, "-c", WASMTIME_COMMAND] if engine == "wasmtime"
               else [str(NODE), "--no-warnings", str(JS / "wasi_run.mjs")])
    result = subprocess.run([*command, str(tmp_path / "model.wasm")], input=npy_stream(x),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    (y,) = read_npy_stream(result.stdout, 1)
    assert np.array_equal(y, -x)


def test_a_batch_on_axis_1_streams_through_the_command_form(tmp_path: Path) -> None:
    """The .npy headers carry N where the metadata puts the batch: [2, N, 5] for a recurrent state."""
    from tests import model_zoo

    wasm = convert_onnx(model_zoo.stateful_recurrent(), max_batch=4, wasi=True).wasm
    rng = np.random.default_rng(5)
    x, state = rng.random((3, 6, 4), np.float32), rng.random((2, 3, 5), np.float32) - 0.5
    status, stdout, stderr = run_wasmtime_wasi(wasm, npy_stream(x, state), tmp_path)
    assert status == 0, stderr
    score, next_state = read_npy_stream(stdout, 2)
    want = WasmModel(wasm, PLAIN).run({"x": x, "state": state})
    assert next_state.shape == (2, 3, 5) and score.shape == (3, 5)
    np.testing.assert_array_equal(next_state, want["next_state"])
    np.testing.assert_array_equal(score, want["score"])
    status, _, stderr = run_wasmtime_wasi(wasm, npy_stream(x, state[:, :2]), tmp_path / "mismatch")
    assert status == 2 and "batch size N differs" in stderr


@pytest.mark.parametrize("engine", ["wasmtime", "node"])
def test_symbolic_dims_take_each_size_the_header_gives(engine: str, tmp_path: Path) -> None:
    """ABI version 3: an input's header may give any size within the ranges on its run-time axes; the output
    whose dims follow them has the run's dims in its header, and the static one its own: ONNX Runtime's
    results, bit for bit the ABI's."""
    if engine == "node" and NODE_PROBLEM is not None:
        pytest.skip(NODE_PROBLEM)
    case = SymbolicCase()
    wasm = case.convert(wasi=True)
    reference = WasmModel(wasm, PLAIN)
    run = run_wasmtime_wasi if engine == "wasmtime" else run_node_wasi
    for height, width in ((12, 8), (13, 37), (16, 100)):  # the output's width takes 1, 2 and 2 digits
        feeds = case.inputs(height, width)
        status, stdout, stderr = run(wasm, npy_stream(*feeds.values()), tmp_path / str(width))
        assert status == 0, stderr
        got = read_npy_stream(stdout, 2)
        for actual, want, same in zip(got, ort_run(case.model, feeds), reference.run(feeds).values(), strict=True):
            assert actual.shape == want.shape == same.shape
            np.testing.assert_allclose(actual, want, rtol=1e-4, atol=1e-5)
            assert np.array_equal(actual.view(np.uint8), same.view(np.uint8))
        assert got[0].shape == (1, 4, (height - 1) // 2 + 1, (width - 1) // 2 + 1)


SYMBOLIC_MISFITS: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {
    "width above": ((1, 3, 16, 101), (1, 1, 1, 101),
                    "input 'x' (.npy 1 of 2 on stdin): axis 3 is outside its range 8..100; expected {'descr': '<f4', "
                    "'fortran_order': False, 'shape': (1, 3, 12..16, 8..100), }, got {'descr': '<f4', 'fortran_order':"
                    " False, 'shape': (1, 3, 16, 101), }"),
    "width below": ((1, 3, 16, 7), (1, 1, 1, 7),
                    "input 'x' (.npy 1 of 2 on stdin): axis 3 is outside its range 8..100"),
    "height above": ((1, 3, 17, 50), (1, 1, 1, 50), "input 'x' (.npy 1 of 2 on stdin): axis 2 is outside its range "
                                                    "12..16"),
    "mask width above": ((1, 3, 16, 50), (1, 1, 1, 1000), "input 'mask' (.npy 2 of 2 on stdin): axis 3 is outside "
                                                          "its range 8..100"),
    "widths differ": ((1, 3, 16, 50), (1, 1, 1, 51), "input 'mask' (.npy 2 of 2 on stdin): axis 3 is the dim 'W', as "
                                                     "axis 3 of input 'x' is, but their sizes differ"),
    "fixed dim": ((1, 2, 16, 50), (1, 1, 1, 50), "input 'x' (.npy 1 of 2 on stdin): shape differs"),
}


@pytest.mark.parametrize("kind", list(SYMBOLIC_MISFITS))
def test_symbolic_dims_out_of_range_exit_2_naming_the_input_axis_and_range(kind: str, tmp_path: Path) -> None:
    x, mask, message = SYMBOLIC_MISFITS[kind]
    wasm = SymbolicCase().convert(wasi=True)
    stdin = npy_stream(np.zeros(x, np.float32), np.zeros(mask, np.float32))
    status, stdout, stderr = run_wasmtime_wasi(wasm, stdin, tmp_path)
    assert (status, stdout) == (2, b"")
    assert stderr.startswith(f"wasinfer: {message}"), stderr
    if kind == "width above" and NODE_PROBLEM is None:
        assert run_node_wasi(wasm, stdin, tmp_path / "node") == (2, b"", stderr)


def test_bfloat16_and_float8_stream_as_numpy_writes_them(tmp_path: Path) -> None:
    """The ml_dtypes types have no .npy descr of their own: np.save writes raw bytes ('<V2', '<V1'), which the
    module reads and writes as they are, so the arrays come back as bytes to view as their type."""
    import ml_dtypes

    nodes = [helper.make_node("Transpose", ["x"], ["y"]), helper.make_node("Cast", ["x"], ["z"],
                                                                           to=TensorProto.FLOAT8E4M3FN)]
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [3, 2]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT8E4M3FN, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    x = np.array([[1.5, -2.0, 300.0], [0.0078125, -0.5, 7.0]], np.float32).astype(ml_dtypes.bfloat16)
    status, out, err = run_wasmtime_wasi(convert_onnx(model, wasi=True).wasm, npy_stream(x), tmp_path)
    assert status == 0, err
    y, z = read_npy_stream(out, 2)
    assert (y.dtype.kind, y.dtype.itemsize, z.dtype.itemsize) == ("V", 2, 1)
    assert y.tobytes() == x.T.copy().tobytes()
    assert z.tobytes() == x.astype(np.float32).astype(ml_dtypes.float8_e4m3fn).tobytes()


def test_a_sequence_input_and_output_stream_as_the_tensors_that_carry_them(tmp_path: Path) -> None:
    """--sequence s=1..3 --wasi: stdin holds the element slots and the count, one .npy each in metadata order,
    stdout the returned sequence's slots and count (the first `count` are the run's, docs/abi.md); a count out of
    range ends with status 2 and the input's run error."""
    elements = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"]),
                               helper.make_node("Identity", ["s"], ["back"])], "seq",
                              [helper.make_value_info("s", elements)],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                               helper.make_value_info("back", elements)])
    result = convert_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                          sequences={"s": (1, 3)}, wasi=True)
    assert [t.name for t in result.metadata.outputs] == ["n", "back.0", "back.1", "back.2", "back.count"]
    slots = [np.full(2, i, np.float32) for i in range(3)]
    status, stdout, stderr = run_wasmtime_wasi(result.wasm, npy_stream(*slots, np.array(2, np.int64)), tmp_path)
    assert status == 0, stderr
    n, *back, count = read_npy_stream(stdout, 5)
    assert n == 2 and count == 2
    np.testing.assert_array_equal(back[:2], slots[:2])
    status, _, stderr = run_wasmtime_wasi(result.wasm, npy_stream(*slots, np.array(4, np.int64)), tmp_path / "bad")
    assert status == 2 and "input 's': a sequence of 1..3 tensors" in stderr, stderr
