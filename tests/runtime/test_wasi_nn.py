"""The WASI-NN host, through guests written in WAT that call `wasi_ephemeral_nn` directly.

Each backend is checked against its own run of the same model; each misuse against the errno the
module docstring of wasinfer.runtime.wasi_nn promises (the guest exits 10 * step + errno, see
tests/nn_guests.py). Guests that loop or grow must fail alone: the next guest still runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.artifact.engines import SymbolicCase
from tests.hostile import bounded
from tests.nn_guests import (
    DATA,
    DIMS,
    STEP_COMPUTE,
    STEP_GET,
    STEP_INIT,
    STEP_LOAD,
    STEP_SET,
    X,
    argv_preopen_guest,
    dense_onnx,
    echo_guest,
    growing_guest,
    int_onnx,
    looping_guest,
    nn_guest,
    wat_guest,
)
from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.runtime import WasmModel
from wasinfer.runtime.litert import LiteRtModel
from wasinfer.runtime.onnxruntime import OnnxRuntimeModel
from wasinfer.runtime.wasi_nn import (
    EXIT_DEADLINE,
    EXIT_TRAP,
    ExecutionTarget,
    GraphEncoding,
    GuestError,
    GuestResult,
    NnErrno,
    NnLimits,
    Preload,
    TensorType,
    run_guest,
)

TFLITE = Path(__file__).parent.parent / "fixtures" / "dense_softmax.tflite"


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return bytes(dense_onnx().SerializeToString())


@pytest.fixture(scope="module")
def wasinfer_bytes() -> bytes:
    return bytes(convert_onnx(dense_onnx(), max_batch=4).wasm)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, onnx_bytes: bytes, wasinfer_bytes: bytes) -> Path:
    directory = tmp_path_factory.mktemp("models")
    (directory / "dense.onnx").write_bytes(onnx_bytes)
    (directory / "dense.wasm").write_bytes(wasinfer_bytes)
    (directory / "ints.onnx").write_bytes(int_onnx().SerializeToString())
    return directory


def ok(result: GuestResult) -> np.ndarray:
    assert result.exit_code == 0, result.stderr.decode()
    return np.frombuffer(result.stdout, np.float32)


def failed_at(result: GuestResult, step: int, errno: NnErrno) -> None:
    assert result.exit_code == 10 * step + errno, (result.exit_code, result.stderr.decode())
    assert b"[WASI-NN]" in result.stderr  # the host says why, as WasmEdge logs it


def guest_for(x: np.ndarray, **kwargs: object) -> bytes:
    return nn_guest(dims=x.shape, data=x.tobytes(), **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the numbers

def test_the_enums_are_wasmedge_s_numbers() -> None:
    assert [(e.name, e.value) for e in NnErrno] == [
        ("SUCCESS", 0), ("INVALID_ARGUMENT", 1), ("INVALID_ENCODING", 2), ("MISSING_MEMORY", 3), ("BUSY", 4),
        ("RUNTIME_ERROR", 5), ("UNSUPPORTED_OPERATION", 6), ("TOO_LARGE", 7), ("NOT_FOUND", 8)]
    assert [(e.name, e.value) for e in GraphEncoding] == [
        ("OPENVINO", 0), ("ONNX", 1), ("TENSORFLOW", 2), ("PYTORCH", 3), ("TENSORFLOWLITE", 4), ("AUTODETECT", 5),
        ("GGML", 6)]
    assert [(e.name, e.value) for e in ExecutionTarget] == [("CPU", 0), ("GPU", 1), ("TPU", 2), ("AUTO", 3)]
    assert [(e.name, e.value) for e in TensorType] == [("F16", 0), ("F32", 1), ("F64", 2), ("U8", 3), ("I32", 4),
                                                       ("I64", 5)]


def test_preload_specs_parse_as_wasmedge_s() -> None:
    assert Preload.parse("default:GGML:AUTO:/m/llama.gguf") == Preload("default", "ggml", "auto", Path("/m/llama.gguf"))
    assert Preload.parse("m:TensorflowLite:CPU:C:/x.tflite").path == Path("C:/x.tflite")  # the path keeps its colons
    assert Preload.parse("w:wasinfer:cpu:model.wasm").encoding == "wasinfer"
    for bad, says in (("default:onnx:cpu", "ALIAS:ENCODING:TARGET:PATH"), (":onnx:cpu:m.onnx", "ALIAS:ENC"),
                      ("a:keras:cpu:m.h5", "unknown encoding 'keras'"), ("a:onnx:npu:m.onnx", "unknown target 'npu'")):
        with pytest.raises(ValueError, match=says):
            Preload.parse(bad)


# ---------------------------------------------------------------- each backend, by bytes and by name

def test_onnx_by_bytes_and_by_name_match_onnx_runtime(onnx_bytes: bytes, models: Path) -> None:
    expected = OnnxRuntimeModel(onnx_bytes).run({"x": X})["y"]
    by_bytes = ok(run_guest(guest_for(X, model=onnx_bytes, encoding=GraphEncoding.ONNX)))
    np.testing.assert_allclose(by_bytes.reshape(2, 3), expected, rtol=1e-6)
    preload = Preload.parse(f"dense:onnx:cpu:{models / 'dense.onnx'}")
    by_name = ok(run_guest(guest_for(X, name="dense"), preloads=[preload]))
    np.testing.assert_array_equal(by_name, by_bytes)
    one = ok(run_guest(guest_for(X[:1], name="dense"), preloads=[preload]))  # the batch dim is dynamic
    np.testing.assert_allclose(one.reshape(1, 3), expected[:1], rtol=1e-6)
    auto = ok(run_guest(guest_for(X, model=onnx_bytes, encoding=GraphEncoding.AUTODETECT, target=3)))
    np.testing.assert_array_equal(auto, by_bytes)


def test_tflite_by_bytes_and_by_name_match_litert() -> None:
    content = TFLITE.read_bytes()
    expected = LiteRtModel(content).run({"x": X})["probabilities"]
    by_bytes = ok(run_guest(guest_for(X, model=content, encoding=GraphEncoding.TENSORFLOWLITE)))
    np.testing.assert_allclose(by_bytes.reshape(2, 3), expected, rtol=1e-6)
    by_name = ok(run_guest(guest_for(X, name="dense"), preloads=[Preload.parse(f"dense:TensorflowLite:CPU:{TFLITE}")]))
    np.testing.assert_array_equal(by_name, by_bytes)
    auto = ok(run_guest(guest_for(X, model=content, encoding=GraphEncoding.AUTODETECT)))
    np.testing.assert_array_equal(auto, by_bytes)


def test_wasinfer_modules_by_autodetect_and_by_name(wasinfer_bytes: bytes, models: Path) -> None:
    expected = WasmModel(wasinfer_bytes).run({"x": X})["y"]
    auto = ok(run_guest(guest_for(X, model=wasinfer_bytes, encoding=GraphEncoding.AUTODETECT),
                        memory_limit_bytes=256 << 20, deadline_seconds=30))
    np.testing.assert_array_equal(auto.reshape(2, 3), expected)
    preload = Preload.parse(f"dense:wasinfer:cpu:{models / 'dense.wasm'}")
    by_name = ok(run_guest(guest_for(X, name="dense"), preloads=[preload]))
    np.testing.assert_array_equal(by_name, auto)
    # A batch over the module's compiled --max-batch is the guest's mistake, not a host failure.
    big = np.zeros((5, 4), np.float32)
    failed_at(run_guest(guest_for(big, name="dense"), preloads=[preload]), STEP_COMPUTE, NnErrno.INVALID_ARGUMENT)


def test_a_version_3_module_takes_dims_within_its_ranges_and_names_the_range_otherwise(tmp_path: Path) -> None:
    """ABI version 3: set_input takes any size within an input's ranges (the actual dims go to the module), the
    output whose dims follow comes back packed for the run's dims, and a size outside a range is invalid_argument
    at set_input, before the data is copied, saying which input, axis and range."""
    case = SymbolicCase(masked=False)
    wasm = case.convert()
    (tmp_path / "symbolic.wasm").write_bytes(wasm)
    preload = Preload.parse(f"symbolic:wasinfer:cpu:{tmp_path / 'symbolic.wasm'}")
    for height, width in ((12, 8), (13, 37), (16, 100)):
        x = case.inputs(height, width)["x"]
        want = ort_run(case.model, {"x": x})
        for index, expected in enumerate(want):  # z [1, 4, H', W'], then s [1, 4]
            got = ok(run_guest(guest_for(x, name="symbolic", out_index=index), preloads=[preload]))
            assert got.size == expected.size, f"output {index} at {height}x{width}: {got.size} values"
            np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)
    for shape, says in (((1, 3, 16, 101), b"axis 3 is 101, outside its range 8..100"),
                        ((1, 3, 11, 50), b"axis 2 is 11, outside its range 12..16"),
                        ((1, 4, 16, 50), b"expected shape [1, 3, 12..16, 8..100], got [1, 4, 16, 50]")):
        result = run_guest(guest_for(np.zeros(shape, np.float32), name="symbolic"), preloads=[preload])
        failed_at(result, STEP_SET, NnErrno.INVALID_ARGUMENT)
        assert b"set_input: input 'x': " + says in result.stderr, result.stderr.decode()


def test_a_version_3_module_s_inputs_that_share_a_dim_must_agree(tmp_path: Path) -> None:
    """Two inputs whose model names a dim alike ("W") share its symbol: set alike they run (ONNX Runtime's result),
    set unlike each passes set_input (each within its range) and compute answers invalid_argument, naming both."""
    case = SymbolicCase()
    (tmp_path / "masked.wasm").write_bytes(case.convert())
    preload = Preload.parse(f"masked:wasinfer:cpu:{tmp_path / 'masked.wasm'}")
    feeds = case.inputs(14, 30)
    x, mask = feeds["x"], feeds["mask"]
    got = ok(run_guest(guest_for(x, name="masked", more_inputs=[(mask.shape, mask.tobytes())]), preloads=[preload]))
    want = ort_run(case.model, feeds)[0]
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    narrow = np.ones((1, 1, 1, 29), np.float32)
    result = run_guest(guest_for(x, name="masked", more_inputs=[(narrow.shape, narrow.tobytes())]), preloads=[preload])
    failed_at(result, STEP_COMPUTE, NnErrno.INVALID_ARGUMENT)
    assert b"input 'mask': axis 3 is 29, but it is the dim 'W' that input 'x' has as 30" in result.stderr


def test_i32_inputs_and_fixed_dims(models: Path) -> None:
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    preload = Preload.parse(f"ints:onnx:cpu:{models / 'ints.onnx'}")
    out = ok(run_guest(nn_guest(name="ints", dims=(2, 3), tensor_type=TensorType.I32, data=x.tobytes()),
                       preloads=[preload]))
    np.testing.assert_array_equal(out, (2 * x).ravel().astype(np.float32))
    failed_at(run_guest(nn_guest(name="ints", dims=(3, 2), tensor_type=TensorType.I32, data=x.tobytes()),
                        preloads=[preload]), STEP_SET, NnErrno.INVALID_ARGUMENT)  # a fixed dim differs
    failed_at(run_guest(nn_guest(name="ints", dims=(2, 3), tensor_type=TensorType.F32, data=x.tobytes()),
                        preloads=[preload]), STEP_SET, NnErrno.INVALID_ARGUMENT)  # f32 for an int32 input


# ---------------------------------------------------------------- misuse: an errno each, never a host failure

BAD = 0xFFFFFFF0  # an address past any guest memory


@pytest.mark.parametrize(("case", "step", "errno"), [
    ({"load": {0: BAD}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # the builder array is outside memory
    ({"builders": [(BAD, 16)]}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # the model bytes are
    ({"builders": [(DATA, 0x7FFFFFFF)]}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # a huge length
    ({"load": {1: 2}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # two builders
    ({"load": {2: 99}}, STEP_LOAD, NnErrno.INVALID_ENCODING),  # an encoding nobody defines
    ({"load": {2: GraphEncoding.OPENVINO}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # one without a backend here
    ({"load": {2: GraphEncoding.GGML}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),
    ({"load": {3: 9}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # an unknown target
    ({"load": {3: ExecutionTarget.TPU}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),
    ({"load": {4: BAD}}, STEP_LOAD, NnErrno.INVALID_ARGUMENT),  # the graph out-pointer
    ({"init": {0: 42}}, STEP_INIT, NnErrno.INVALID_ARGUMENT),  # a graph never loaded
    ({"init": {1: BAD}}, STEP_INIT, NnErrno.INVALID_ARGUMENT),
    ({"set_input": {0: 7}}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # a context never made
    ({"set_input": {1: 1}}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # input index past the model's one
    ({"set_input": {2: BAD}}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # the tensor struct
    ({"tensor_type": TensorType.I32}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # the model takes f32
    ({"tensor_type": 77}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # no such tensor type
    ({"dims": (2, 5)}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # the model's fixed dim is 4
    ({"dims": (8,)}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # wrong rank
    ({"tensor": (DIMS, 2, 1, DATA, 12)}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # bytes != dims
    ({"tensor": (BAD, 2, 1, DATA, 32)}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # dims outside memory
    ({"tensor": (DIMS, 0x40000000, 1, DATA, 32)}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # a huge rank
    ({"tensor": (DIMS, 2, 1, BAD, 32)}, STEP_SET, NnErrno.INVALID_ARGUMENT),  # data outside memory
    ({"compute": {0: 99}}, STEP_COMPUTE, NnErrno.INVALID_ARGUMENT),
    ({"out_max": 23}, STEP_GET, NnErrno.TOO_LARGE),  # 24 bytes of output
    ({"out_index": 1}, STEP_GET, NnErrno.INVALID_ARGUMENT),
    ({"get_output": {2: BAD}}, STEP_GET, NnErrno.INVALID_ARGUMENT),  # the buffer
    ({"get_output": {4: BAD}}, STEP_GET, NnErrno.INVALID_ARGUMENT),  # the bytes-written pointer
    ({"get_output": {0: -1}}, STEP_GET, NnErrno.INVALID_ARGUMENT),
])
def test_misuse_gets_the_spec_s_errno(onnx_bytes: bytes, case: dict[str, object], step: int,
                                      errno: NnErrno) -> None:
    kwargs: dict[str, object] = {"model": onnx_bytes, "dims": X.shape, "data": X.tobytes(), **case}
    failed_at(run_guest(nn_guest(**kwargs)), step, errno)  # type: ignore[arg-type]


def test_compute_before_every_input_is_set_and_bad_model_bytes(onnx_bytes: bytes) -> None:
    skip_set = nn_guest(model=onnx_bytes, dims=X.shape, data=X.tobytes(), set_input={0: 5})
    failed_at(run_guest(skip_set), STEP_SET, NnErrno.INVALID_ARGUMENT)
    garbage = b"\x08\x07not a model at all" * 4
    failed_at(run_guest(guest_for(X, model=garbage, encoding=GraphEncoding.ONNX)), STEP_LOAD,
              NnErrno.INVALID_ARGUMENT)
    failed_at(run_guest(guest_for(X, model=garbage, encoding=GraphEncoding.TENSORFLOWLITE)), STEP_LOAD,
              NnErrno.INVALID_ARGUMENT)
    tflite_on_gpu = guest_for(X, model=TFLITE.read_bytes(), encoding=GraphEncoding.TENSORFLOWLITE,
                              target=ExecutionTarget.GPU)
    failed_at(run_guest(tflite_on_gpu), STEP_LOAD, NnErrno.INVALID_ARGUMENT)  # LiteRT runs on cpu only, as in WasmEdge


def test_unknown_names_model_limits_and_handle_limits(onnx_bytes: bytes, models: Path) -> None:
    dense = Preload.parse(f"dense:onnx:cpu:{models / 'dense.onnx'}")
    failed_at(run_guest(guest_for(X, name="nope"), preloads=[dense]), STEP_LOAD, NnErrno.NOT_FOUND)
    gone = Preload.parse(f"gone:onnx:cpu:{models / 'missing.onnx'}")  # the file is read at load_by_name
    failed_at(run_guest(guest_for(X, name="gone"), preloads=[gone]), STEP_LOAD, NnErrno.NOT_FOUND)
    failed_at(run_guest(guest_for(X, model=onnx_bytes), limits=NnLimits(max_model_bytes=len(onnx_bytes) - 1)),
              STEP_LOAD, NnErrno.TOO_LARGE)
    # A guest that loads the same preload until refused: the host stops it at max_graphs with busy.
    name = b"dense"
    loads = wat_guest(
        f'(block $done (loop $again (local.set $e (call $load_by_name (i32.const 64) (i32.const {len(name)}) '
        '(i32.const 0))) (br_if $done (local.get $e)) (i32.store (i32.const 128) (i32.add (i32.load (i32.const 128)) '
        '(i32.const 1))) (br $again))) (call $exit (i32.add (i32.mul (i32.load (i32.const 128)) (i32.const 10)) '
        '(local.get $e)))', extra=f'(data (i32.const 64) "{name.decode()}")')
    result = run_guest(loads, preloads=[Preload.parse(f"dense:onnx:cpu:{models / 'dense.onnx'}")],
                       limits=NnLimits(max_graphs=3))
    assert result.exit_code == 3 * 10 + NnErrno.BUSY, result.stderr.decode()


def test_a_guest_without_memory_gets_missing_memory() -> None:
    # Without a memory even proc_exit fails, so: return (exit 0) on missing_memory, trap on anything else.
    guest = wat_guest(f"(if (i32.ne (call $load_by_name (i32.const 0) (i32.const 4) (i32.const 8)) (i32.const "
                      f"{NnErrno.MISSING_MEMORY:d})) (then unreachable))", export_memory=False)
    result = run_guest(guest)
    assert result.exit_code == 0, result.stderr.decode()
    assert b"exports no memory" in result.stderr


# ---------------------------------------------------------------- limits: the guest fails, the host goes on

def test_a_looping_guest_is_stopped_at_its_deadline_and_the_next_runs() -> None:
    result = bounded(lambda: run_guest(looping_guest(), deadline_seconds=0.2), "the guest")
    assert result.exit_code == EXIT_DEADLINE
    assert b"ran past its deadline of 0.2 s" in result.stderr
    assert run_guest(echo_guest(), stdin=b"still here").stdout == b"still here"


def test_a_guest_s_huge_memory_fill_is_stopped_at_its_deadline() -> None:
    """Issue 15 row 9, for guests: one memory.fill over a 4 GiB memory ran seconds past the deadline (a
    single instruction); guests get the same 1 MiB pieces as models. Bound 2 s, expected about 0.1 s."""
    guest = wat_guest("(memory.fill (i32.const 0) (i32.const 7) (i32.const -1))", memory_pages=65536)
    started = time.monotonic()
    result = bounded(lambda: run_guest(guest, deadline_seconds=0.05), "the guest")
    elapsed = time.monotonic() - started
    assert result.exit_code == EXIT_DEADLINE and b"ran past its deadline of 0.05 s" in result.stderr
    assert elapsed < 2.0, f"a 4 GiB memory.fill in a guest ran {elapsed:.1f} s against a 50 ms deadline"


def test_a_growing_guest_stops_at_its_memory_cap_and_the_next_runs(onnx_bytes: bytes) -> None:
    cap = 4 << 20
    result = bounded(lambda: run_guest(growing_guest(), memory_limit_bytes=cap, deadline_seconds=30), "the guest")
    assert result.exit_code == EXIT_TRAP
    assert f"at its cap of {cap} bytes".encode() in result.stderr
    np.testing.assert_array_equal(ok(run_guest(guest_for(X, model=onnx_bytes), memory_limit_bytes=cap)).shape, (6,))
    too_big = wat_guest("", memory_pages=128)  # 8 MiB at instantiation, over the cap
    result = run_guest(too_big, memory_limit_bytes=cap)
    assert result.exit_code == EXIT_TRAP and b"cap" in result.stderr


def test_a_trap_is_an_exit_code_and_proc_exit_is_the_guest_s() -> None:
    result = run_guest(wat_guest("unreachable"))
    assert result.exit_code == EXIT_TRAP and b"the guest trapped" in result.stderr
    assert run_guest(wat_guest("(call $exit (i32.const 42))")).exit_code == 42


def test_what_the_host_cannot_run_raises_guest_error(tmp_path: Path) -> None:
    import wasmtime

    with pytest.raises(GuestError, match="not a WebAssembly module"):
        run_guest(b"\0asm\x01\0\0\0garbage")
    with pytest.raises(GuestError, match="no _start"):
        run_guest(bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))')))
    with pytest.raises(GuestError, match=r"env\.mystery"):
        run_guest(bytes(wasmtime.wat2wasm('(module (import "env" "mystery" (func)) (func (export "_start")))')))
    with pytest.raises(GuestError, match="not a directory"):
        run_guest(echo_guest(), dirs=[(tmp_path / "absent", "/data")])


def test_wasi_stdin_stdout_args_and_preopens(tmp_path: Path) -> None:
    assert run_guest(echo_guest(), stdin=b"abc\x00\xff").stdout == b"abc\x00\xff"
    module = argv_preopen_guest()
    assert run_guest(module, args=["x", "y"]).exit_code == 3 * 10 + 8  # argv: program, x, y; no preopen
    assert run_guest(module, dirs=[(tmp_path, "/data")]).exit_code == 1 * 10 + 0


def test_string_outputs_are_refused_rather_than_leaking_host_pointers(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)], "strings",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [2, 4])])
    model = bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    result = run_guest(guest_for(X, model=model))
    failed_at(result, STEP_GET, NnErrno.INVALID_ARGUMENT)
    assert b"holds strings" in result.stderr and result.stdout == b""


def test_contexts_may_not_multiply_a_model_s_memory_past_the_limit(wasinfer_bytes: bytes) -> None:
    failed_at(run_guest(guest_for(X, model=wasinfer_bytes, encoding=GraphEncoding.AUTODETECT),
                        limits=NnLimits(max_context_bytes=1024)), STEP_INIT, NnErrno.BUSY)


def test_target_gpu_runs_on_cuda_where_onnxruntime_has_it_and_is_refused_elsewhere(onnx_bytes: bytes) -> None:
    import onnxruntime as ort

    on_gpu = run_guest(guest_for(X, model=onnx_bytes, encoding=GraphEncoding.ONNX, target=ExecutionTarget.GPU))
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        failed_at(on_gpu, STEP_LOAD, NnErrno.INVALID_ARGUMENT)  # no silent fall-back to the CPU, as in WasmEdge
        assert b"CUDA provider" in on_gpu.stderr
        return
    on_cpu = ok(run_guest(guest_for(X, model=onnx_bytes, encoding=GraphEncoding.ONNX)))
    np.testing.assert_allclose(ok(on_gpu), on_cpu, rtol=1e-4, atol=1e-6)
