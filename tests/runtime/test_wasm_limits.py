"""Deadlines and memory caps of WasmModel: a misbehaving module fails its own call, nothing else.

Every call that could hang if interruption were broken runs on a daemon thread with a generous
bound, so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.hostile import (
    BOUND,
    PAGE,
    big_memory_module,
    bounded,
    bulk_fill_module,
    echo_module,
    growing_module,
    looping_module,
    looping_start_module,
    memory_bomb_module,
    table_growing_module,
    trapping_module,
)
from wasinfer.artifact import convert_onnx
from wasinfer.artifact.metadata import read_metadata
from wasinfer.runtime import (
    CompiledCache,
    DeadlineExceeded,
    MemoryLimitExceeded,
    ModelFault,
    WasmModel,
    make_engine,
)
from wasinfer.runtime.interrupt import REWRITE_TAG
from wasinfer.runtime.wasm import ENGINE_TAG, engine_tag

CAP = 8 << 20
X = np.array([[1.5, -2.0, 3.0, 4.25], [0.5, 6.0, -7.0, 8.0]], np.float32)


def hostile_x() -> dict[str, np.ndarray]:
    return {"x": -np.abs(X)}  # a negative first element sends looping_module into its loop


def mlp_model() -> helper.ModelProto:
    """y = relu(x @ w + b), FP32 [N, 16] → [N, 8]: a normal model, with loops in its kernels."""
    rng = np.random.default_rng(7)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_looping_call_is_stopped_and_only_its_instance_is_spent() -> None:
    engine = make_engine()
    wasm = looping_module()
    compiled = (CompiledCache(None).load(engine, wasm), read_metadata(wasm))
    model = WasmModel(b"", engine, compiled=compiled, deadline_seconds=0.1)
    np.testing.assert_array_equal(model.run({"x": X})["y"], X)  # the deadline is per call, not per instance

    with pytest.raises(DeadlineExceeded, match=r"model 'loop' ran past its deadline of 100 ms") as caught:
        bounded(lambda: model.run(hostile_x()))
    assert caught.value.deadline_seconds == 0.1
    with pytest.raises(ModelFault, match="unusable after an earlier fault") as refused:
        model.run({"x": X})
    assert not isinstance(refused.value, DeadlineExceeded)

    # The engine and the compiled module are untouched: a fresh instance answers, and stops again.
    fresh = WasmModel(b"", engine, compiled=compiled, deadline_seconds=0.1)
    np.testing.assert_array_equal(fresh.run({"x": X})["y"], X)
    with pytest.raises(DeadlineExceeded):
        bounded(lambda: fresh.run(hostile_x()))
    normal = WasmModel(echo_module(), engine, deadline_seconds=0.1)
    np.testing.assert_array_equal(normal.run({"x": X})["y"], X)


def test_each_call_gets_the_whole_deadline() -> None:
    """The deadline restarts with every call: an instance outlives many deadlines between its calls
    (were it set once, the first call after the pauses would trap at its entry)."""
    model = WasmModel(convert_onnx(mlp_model(), max_batch=4).wasm, deadline_seconds=0.02)
    x = np.ones((4, 16), np.float32)
    expected = model.run({"x": x})["y"]
    for _ in range(5):
        time.sleep(0.03)
        np.testing.assert_array_equal(model.run({"x": x})["y"], expected)


def test_a_start_function_that_never_returns_is_stopped_at_instantiation() -> None:
    with pytest.raises(DeadlineExceeded, match=r"'loopstart' .* \(instantiation\)"):
        bounded(lambda: WasmModel(looping_start_module(), make_engine(), deadline_seconds=0.05))


def test_a_memory_bomb_is_held_to_the_cap() -> None:
    model = WasmModel(memory_bomb_module(), make_engine(), deadline_seconds=10.0, memory_limit_bytes=CAP)
    with pytest.raises((MemoryLimitExceeded, DeadlineExceeded)) as caught:
        bounded(lambda: model.run({"x": X}))
    assert isinstance(caught.value, MemoryLimitExceeded)  # this bomb stops when a grow fails
    assert f"grew its memory from {PAGE} to {CAP} bytes" in str(caught.value)
    assert f"cap of {CAP} bytes" in str(caught.value)
    assert model.memory_bytes_at_fault is not None and model.memory_bytes_at_fault <= CAP
    with pytest.raises(ModelFault, match="unusable"):
        model.run({"x": X})


def test_growing_memory_is_a_fault_even_without_a_cap() -> None:
    """The ABI promises a fixed memory, and our view of it would go stale if it moved."""
    model = WasmModel(growing_module(2))
    with pytest.raises(ModelFault, match=rf"grew its memory from {PAGE} to {3 * PAGE} bytes") as caught:
        model.run({"x": X})
    assert not isinstance(caught.value, MemoryLimitExceeded)


def test_a_module_over_the_cap_does_not_instantiate() -> None:
    pages = CAP // PAGE + 1
    with pytest.raises(MemoryLimitExceeded, match=rf"'echo' needs {pages * PAGE} bytes of linear memory at "
                       rf"instantiation, more than the instance memory cap of {CAP} bytes"):
        WasmModel(big_memory_module(pages), make_engine(), memory_limit_bytes=CAP)
    at_cap = WasmModel(big_memory_module(CAP // PAGE), make_engine(), memory_limit_bytes=CAP)
    np.testing.assert_array_equal(at_cap.run({"x": X})["y"], X)


def test_a_trap_is_a_fault_with_its_reason() -> None:
    model = WasmModel(trapping_module(), make_engine(), deadline_seconds=1.0)
    with pytest.raises(ModelFault, match=r"'trap' trapped \(wasinfer_run\): wasm trap: wasm `unreachable`") as caught:
        model.run({"x": X})
    assert not isinstance(caught.value, DeadlineExceeded)
    assert "backtrace" not in str(caught.value)


def test_limits_leave_a_normal_model_bit_identical() -> None:
    wasm = convert_onnx(mlp_model(), max_batch=8).wasm
    plain = WasmModel(wasm)
    limited = WasmModel(wasm, make_engine(), deadline_seconds=5.0, memory_limit_bytes=CAP)
    assert limited._run._raw is not None and limited._flag is not None  # the fast call path, with its interrupt flag
    rng = np.random.default_rng(3)
    for batch in (1, 3, 8):
        x = rng.standard_normal((batch, 16)).astype(np.float32)
        expected, got = plain.run({"x": x})["y"], limited.run({"x": x})["y"]
        assert got.shape == (batch, 8)
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="deadline_seconds must be positive"):
        WasmModel(echo_module(), deadline_seconds=0)
    with pytest.raises(ValueError, match="memory_limit_bytes must be positive"):
        WasmModel(echo_module(), memory_limit_bytes=0)
    with pytest.raises(ValueError, match="needs a module compiled with interrupt checks"):
        WasmModel(echo_module(), make_engine(interruptible=False), deadline_seconds=1.0)


def test_the_cache_keeps_code_with_and_without_interrupt_checks_apart(tmp_path: Path) -> None:
    assert engine_tag(True) == ENGINE_TAG and ENGINE_TAG.endswith(f"|{REWRITE_TAG}")
    wasm, cache = echo_module(), CompiledCache(tmp_path)
    assert cache.key(wasm, engine_tag(True)) != cache.key(wasm, engine_tag(False))
    path = tmp_path / "echo.wasm"
    path.write_bytes(wasm)
    for interruptible in (True, False, True, False):  # the second round deserialises what the first wrote
        engine = make_engine(interruptible)
        model = WasmModel(b"", engine, compiled=cache.load_file(engine, path),
                          deadline_seconds=1.0 if interruptible else None)
        np.testing.assert_array_equal(model.run({"x": X})["y"], X)
    assert len(list(tmp_path.glob("*.cwasm"))) == 2


def test_one_watchdog_stops_many_looping_calls_each_at_its_own_deadline() -> None:
    """Three instances loop on three threads with deadlines 0.1, 0.3 and 0.6 s: each is stopped, no sooner
    than its own deadline, and a normal call armed meanwhile (deadline 30 s) is not touched."""
    engine = make_engine()
    deadlines = [0.1, 0.3, 0.6]
    models = [WasmModel(looping_module(), engine, deadline_seconds=d) for d in deadlines]
    normal = WasmModel(convert_onnx(mlp_model(), max_batch=4).wasm, engine, deadline_seconds=30.0)
    stopped: dict[float, float] = {}
    errors: list[BaseException] = []

    def spin(model: WasmModel, deadline: float) -> None:
        started = time.monotonic()
        try:
            model.run(hostile_x())
        except DeadlineExceeded:
            stopped[deadline] = time.monotonic() - started
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=spin, args=(m, d), daemon=True) for m, d in zip(models, deadlines, strict=True)]
    for thread in threads:
        thread.start()
    x = np.ones((2, 16), np.float32)
    for _ in range(20):
        assert normal.run({"x": x})["y"].shape == (2, 8)
    for thread in threads:
        thread.join(BOUND)
    assert not errors and sorted(stopped) == deadlines
    for deadline, elapsed in stopped.items():
        assert deadline <= elapsed < deadline + BOUND


def test_a_call_that_returns_is_never_interrupted_later() -> None:
    """The watchdog writes a flag only while its call is armed: a call that returned before its deadline
    leaves the flag clear, and the next call on the same instance runs to its end."""
    model = WasmModel(echo_module(), make_engine(), deadline_seconds=0.02)
    for _ in range(3):
        np.testing.assert_array_equal(model.run({"x": X})["y"], X)
        time.sleep(0.05)  # past the deadline the previous call was armed with
    assert model._flag is not None and model._flag.value == 0


def resident_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads resident memory from /proc")
def test_a_faulted_instance_frees_its_memory_at_once_even_if_its_exception_is_kept() -> None:
    """Issue 15 row 1: an instance that filled its memory to the cap stayed alive through the exception's
    traceback (the instance kept the exception, whose frames keep the instance) until the cycle collector
    ran; with the collector off, every fault kept a whole cap of resident memory."""
    cap, faults = 32 << 20, 16
    engine = make_engine()
    wasm = memory_bomb_module(fill=True)  # writes every byte it grows: all of it is resident
    compiled = (CompiledCache(None).load(engine, wasm), read_metadata(wasm))
    kept: list[ModelFault] = []
    gc.collect()
    gc.disable()
    try:
        before = resident_bytes()
        for _ in range(faults):
            model = WasmModel(b"", engine, compiled=compiled, deadline_seconds=BOUND, memory_limit_bytes=cap)
            with pytest.raises(MemoryLimitExceeded) as caught:
                bounded(functools.partial(model.run, {"x": X}))
            kept.append(caught.value)  # a caller (a log, an error report) may hold on to it
            assert model.memory_bytes_at_fault == cap
            with pytest.raises(ModelFault, match="unusable after an earlier fault: model 'bomb' grew its memory"):
                model.run({"x": X})
        grown = resident_bytes() - before
    finally:
        gc.enable()
    assert grown < 2 * cap, f"{faults} faulted instances at a {cap >> 20} MiB cap left {grown >> 20} MiB resident"
    assert len(kept) == faults and all(fault.__traceback__ is not None for fault in kept)


def test_a_deadline_stops_a_huge_bulk_memory_instruction() -> None:
    """Issue 15 row 9: one memory.fill is one instruction, and wasmtime checks a deadline only between
    instructions, so a fill over 1 GiB ran seconds past a 2 s deadline. The host now splits each
    fill and copy into 1 MiB pieces with a loop between them.

    Today's failure: one fill of 4 GiB against a 50 ms deadline returned after 23 s here (on an idle
    machine about 2 s); the bound is 2 s, the expected time about 0.08 s."""
    model = WasmModel(bulk_fill_module(), make_engine(), deadline_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="ran past its deadline of 50 ms"):
        bounded(lambda: model.run({"x": X}))
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"a 4 GiB memory.fill ran {elapsed:.1f} s against a 50 ms deadline"


@pytest.mark.parametrize("deadline", [None, 30.0], ids=["no-deadline", "deadline"])
def test_tables_cannot_grow_past_the_store_cap(deadline: float | None) -> None:
    """A table's elements are host memory outside the linear-memory cap: 100M of them grew a process by 0.8 GB in
    one 0.6 s instruction. Every store caps them (TABLE_ELEMENTS_CAP), so the grow is refused (-1) at once."""
    model = WasmModel(table_growing_module(100_000_000), deadline_seconds=deadline, memory_limit_bytes=CAP)
    before = resident_bytes()
    np.testing.assert_array_equal(model.run({"x": X})["y"], X)  # refused: no trap
    assert resident_bytes() - before < 64 << 20
