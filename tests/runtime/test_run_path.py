"""WasmModel.run's call path: the plan a call reuses while its input shapes repeat (RunPlan), the raw call of
wasinfer_run (I32Call) and the instance's one watchdog alarm. Every fast path must give what the checked path
gives: the right outputs when shapes change between calls, copies that a later run leaves alone, the same named
errors, and a deadline that still stops a module that never returns, whatever deadline the calls before had."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.hostile import BOUND, echo_module, looping_module, spinning_module
from wasinfer.artifact import convert_onnx
from wasinfer.runtime import InputError, WasmModel
from wasinfer.runtime.base import DeadlineExceeded
from wasinfer.runtime.interrupt import WATCHDOG, Alarm, Watchdog
from wasinfer.runtime.wasm import make_engine

RNG = np.random.default_rng(11)


def x_of(batch: int) -> np.ndarray:
    return RNG.standard_normal((batch, 4)).astype(np.float32)


def python_calls(call: Callable[[], object]) -> int:
    """How many Python functions `call` enters (C functions not counted): what a call costs in the interpreter."""
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        count += event == "call"

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return count - 1  # `call` itself


def test_a_repeated_call_skips_the_checks_its_plan_passed() -> None:
    """The checked path (names, dtypes, batch, symbols) and wasmtime-py's call wrapper ran on every call: 17 Python
    functions entered per run of a one-input module. With the plan and the raw call, a run with the last call's
    shapes enters only the plan's comparison and the call."""
    model = WasmModel(echo_module())
    x = x_of(2)
    model.run({"x": x})
    calls = python_calls(lambda: model.run({"x": x}))
    assert calls <= 3, f"a repeated run entered {calls} Python functions"


def test_outputs_are_copies_that_a_later_run_leaves_alone() -> None:
    model = WasmModel(echo_module())
    first_x, second_x = x_of(2), x_of(2)
    first = model.run({"x": first_x})["y"]
    second = model.run({"x": second_x})["y"]
    np.testing.assert_array_equal(first, first_x)
    np.testing.assert_array_equal(second, second_x)
    assert not np.shares_memory(first, model._view) and not np.shares_memory(first, second)
    first[...] = 0  # and writing an output touches neither the module's memory nor the next run's output
    np.testing.assert_array_equal(model.run({"x": second_x})["y"], second_x)


def test_batches_changing_between_calls_give_each_call_its_own_shape() -> None:
    model = WasmModel(echo_module())
    for batch in (1, 3, 3, 1, 4, 1, 2, 2):
        x = x_of(batch)
        y = model.run({"x": x})["y"]
        assert y.shape == (batch, 4)
        np.testing.assert_array_equal(y, x)


def test_strided_and_non_contiguous_inputs_are_written_as_their_values() -> None:
    model = WasmModel(echo_module())
    wide = RNG.standard_normal((4, 8)).astype(np.float32)
    for x in (wide[:, ::2], wide[:, 4:], np.asfortranarray(wide[:3, :4]), wide[::-1, 1:5], wide[:2, :4]):
        np.testing.assert_array_equal(model.run({"x": x})["y"], x)
        np.testing.assert_array_equal(model.run({"x": x})["y"], x)  # the second: through the plan


def test_errors_still_name_what_is_wrong_after_a_plan_exists_and_it_survives_them() -> None:
    model = WasmModel(echo_module())
    x = x_of(2)
    model.run({"x": x})
    bad: list[tuple[dict[str, Any], str]] = [
        ({"x": x.astype(np.float64)}, r"input 'x': expected dtype float32, got float64"),
        ({"x": x.reshape(1, 8)}, r"input 'x': expected shape \[N, 4\] with N <= 4, got \[1, 8\]"),
        ({"x": x_of(5)}, r"batch 5 is outside 1..4"),
        ({}, r"inputs: missing \['x'\], unexpected \[\]"),
        ({"x": x, "z": x}, r"inputs: missing \[\], unexpected \['z'\]"),
        ({"z": x}, r"inputs: missing \['x'\], unexpected \['z'\]"),
        ({"x": x.tolist()}, r"input 'x': expected dtype float32, got float64"),
    ]
    for inputs, message in bad:
        with pytest.raises(InputError, match=message):
            model.run(inputs)
        np.testing.assert_array_equal(model.run({"x": x})["y"], x)  # nothing of the refused call was written


def test_subclasses_and_read_only_arrays_give_what_plain_arrays_give() -> None:
    model = WasmModel(echo_module())
    x = x_of(2)
    model.run({"x": x})

    class Tagged(np.ndarray):
        pass

    frozen = x.copy()
    frozen.flags.writeable = False
    for given in (x.view(Tagged), frozen, np.ascontiguousarray(x)):
        y = model.run({"x": given})["y"]
        assert type(y) is np.ndarray and y.flags.writeable
        np.testing.assert_array_equal(y, x)


def symbolic_add() -> onnx.ModelProto:
    """z = x + y, x and y [T, 4] with T one symbol: its size a run's, the two inputs' T equal."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["z"])], "symbolic_add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["T", 4]) for n in ("x", "y")],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_symbolic_dims_are_written_on_every_run_and_checked_when_they_change() -> None:
    result = convert_onnx(symbolic_add(), {"x": (16, 4), "y": (16, 4)},
                          input_ranges={"x": {0: (1, 16)}, "y": {0: (1, 16)}}, simd="plain")
    assert result.metadata.abi_version == 3
    model = WasmModel(result.wasm)
    for length in (5, 5, 3, 16, 16, 1, 5):
        x, y = RNG.standard_normal((length, 4)).astype(np.float32), RNG.standard_normal((length, 4)).astype(np.float32)
        z = model.run({"x": x, "y": y})["z"]
        assert z.shape == (length, 4)
        np.testing.assert_allclose(z, x + y, rtol=1e-6)
    x = np.ones((5, 4), np.float32)
    with pytest.raises(InputError, match=r"input 'y': axis 0 is 3, but it is the dim 'T' that input 'x' has as 5"):
        model.run({"x": x, "y": np.ones((3, 4), np.float32)})
    with pytest.raises(InputError, match=r"input 'x': axis 0 is 17, outside its range 1..16"):
        model.run({"x": np.ones((17, 4), np.float32), "y": np.ones((17, 4), np.float32)})
    # the module may overwrite the dims the host wrote; the next run with the same shapes writes them again
    spec = model.metadata.inputs[0]
    assert spec.dims_offset is not None
    model.run({"x": x, "y": x})
    model._view[spec.dims_offset:spec.dims_offset + 8].view(np.int32)[:] = [1, 4]
    np.testing.assert_array_equal(model.run({"x": x, "y": x})["z"], x + x)


def test_narrow_dtypes_go_through_the_plan_bit_for_bit() -> None:
    dtypes = {"a": (TensorProto.UINT8, np.uint8), "b": (TensorProto.INT8, np.int8),
              "c": (TensorProto.FLOAT16, np.float16), "d": (TensorProto.BOOL, np.bool_),
              "e": (TensorProto.INT64, np.int64)}
    nodes = [helper.make_node("Cast", [n], [f"f{n}"], to=TensorProto.FLOAT) for n in "abc"]
    nodes += [helper.make_node("Not", ["d"], ["fd"]), helper.make_node("Neg", ["e"], ["fe"])]
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info(n, t, ["N", 3])
                                                for n, (t, _) in dtypes.items()],
                              [helper.make_tensor_value_info(f"f{n}", TensorProto.UNDEFINED, None) for n in dtypes])
    model = WasmModel(convert_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                                   max_batch=4).wasm)
    for batch in (2, 2, 3, 2):
        inputs: dict[str, np.ndarray] = {
            "a": RNG.integers(0, 256, (batch, 3)).astype(np.uint8),
            "b": RNG.integers(-128, 128, (batch, 3)).astype(np.int8),
            "c": RNG.standard_normal((batch, 3)).astype(np.float16), "d": RNG.random((batch, 3)) < 0.5,
            "e": RNG.integers(-2**40, 2**40, (batch, 3))}
        got = model.run(inputs)
        for name in "abc":
            np.testing.assert_array_equal(got[f"f{name}"], inputs[name].astype(np.float32))
        np.testing.assert_array_equal(got["fd"], ~inputs["d"])
        np.testing.assert_array_equal(got["fe"], -inputs["e"])


def test_a_deadline_still_stops_a_looping_module_called_through_its_plan() -> None:
    model = WasmModel(looping_module(), make_engine(), deadline_seconds=0.2)
    x = np.abs(x_of(1))
    for _ in range(3):
        np.testing.assert_array_equal(model.run({"x": x})["y"], x)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"'loop' ran past its deadline of 200 ms"):
        model.run({"x": -x})  # the same shape: the plan's path, then the raw call, interrupted
    assert time.monotonic() - started < BOUND


def test_the_call_releases_the_gil_while_a_module_runs() -> None:
    """Other threads (a server's event loop) run while a module computes, as through wasmtime-py's own call."""
    model = WasmModel(spinning_module(300_000_000))  # a few hundred ms here
    x = x_of(1)
    started, done = threading.Event(), threading.Event()

    def run() -> None:
        started.set()
        model.run({"x": x})
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    started.wait(BOUND)
    time.sleep(0.01)
    turns = 0
    while not done.is_set() and turns < 1000:
        turns += 1
        time.sleep(0.0005)
    thread.join(BOUND)
    assert turns >= 3, f"this thread ran {turns} times while the module ran"  # 0 with the GIL held


def entries_of(model: WasmModel) -> int:
    """The watchdog's heap entries for `model`'s flag (stale ones included)."""
    assert model._flag is not None
    address = ctypes.addressof(model._flag)
    return sum(ctypes.addressof(alarm.flag) == address for _, _, alarm in list(WATCHDOG._alarms))


def test_calls_under_a_deadline_leave_one_entry_in_the_watchdog_not_one_per_call() -> None:
    """Each call pushed a new alarm that stayed in the heap until its deadline came (a server at 30 s held every
    call of the last 30 s: 80,000 entries after as many calls of a microbenchmark); an instance's one alarm is
    pushed again only when it comes up."""
    model = WasmModel(echo_module(), make_engine(), deadline_seconds=30.0)
    x = x_of(1)
    for _ in range(300):
        model.run({"x": x})
    assert entries_of(model) <= 2


def test_a_deadline_shorter_than_the_earlier_calls_still_stops_the_module_on_time() -> None:
    """The alarm's entry is for 30 s from the first call; a call with a 0.2 s deadline must not wait for it."""
    model = WasmModel(looping_module(), make_engine(), deadline_seconds=30.0)
    x = np.abs(x_of(1))
    for _ in range(3):
        model.run({"x": x})
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="deadline of 200 ms"):
        model.run({"x": -x}, deadline_seconds=0.2)
    assert time.monotonic() - started < 10.0  # not the 30 s of the entry already in the heap


def test_an_alarm_armed_again_for_later_is_not_fired_by_its_earlier_entry() -> None:
    watchdog, flag = Watchdog(), ctypes.c_int32(0)
    alarm = Alarm(flag)
    watchdog.arm(alarm, 0.05)
    assert not watchdog.disarm(alarm)
    watchdog.arm(alarm, 30.0)  # the entry for 0.05 s stays; it comes up while this call is armed
    time.sleep(0.3)
    assert flag.value == 0 and not watchdog.disarm(alarm)
    watchdog.arm(alarm, 0.05)  # and a shorter one after a longer one fires at its own time
    started = time.monotonic()
    while flag.value == 0 and time.monotonic() - started < BOUND:
        time.sleep(0.01)
    assert watchdog.disarm(alarm) and flag.value == 1
    assert time.monotonic() - started < 10.0


def test_a_forked_child_s_deadline_fires_though_the_parent_s_heap_held_the_alarm() -> None:
    """The child's watchdog starts with an empty heap: an alarm whose entry was in the parent's is pushed again."""
    model = WasmModel(looping_module(), make_engine(), deadline_seconds=30.0)
    x = np.abs(x_of(1))
    model.run({"x": x})
    assert entries_of(model) >= 1
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if the deadline stopped the loop, 1 otherwise
        code = 1
        try:
            model.run({"x": -x}, deadline_seconds=0.2)
        except DeadlineExceeded:
            code = 0
        finally:
            os._exit(code)
    started = time.monotonic()
    while time.monotonic() - started < BOUND:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child's run never stopped")
    assert os.waitstatus_to_exitcode(status) == 0
