"""DFT and STFT lowered to a MatMul and a Conv (passes/spectral.py), against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.parity import ort_run
from wasinfer.artifact import convert_onnx
from wasinfer.frontends import load_onnx
from wasinfer.ir import UnsupportedModel
from wasinfer.lowering.conv import conv_plan
from wasinfer.passes.spectral import lower_spectral
from wasinfer.runtime import WasmModel
from wasinfer.runtime.base import InputError

RNG = np.random.default_rng(3)


def one_node(node: onnx.NodeProto, inputs: dict[str, np.ndarray], constants: dict[str, np.ndarray],
             opset: int) -> onnx.ModelProto:
    graph = helper.make_graph([node], "spectral",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape) for n, v in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output],
                              [numpy_helper.from_array(v, n) for n, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def matches(model: onnx.ModelProto, feeds: dict[str, np.ndarray], atol: float) -> None:
    """Within `atol` of the largest output (float32 sums of many terms: ONNX Runtime's own STFT is off by 5e-4
    where the exact imaginary part of bin 0 is 0)."""
    want = ort_run(model, feeds)[0]
    got = WasmModel(convert_onnx(model).wasm).run(feeds)[model.graph.output[0].name]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol * float(np.abs(want).max()))


@pytest.mark.parametrize("shape,axis,inverse,onesided,length", [
    ((2, 16, 3, 1), 1, 0, 0, None),  # a real signal's full spectrum
    ((2, 16, 3, 1), 1, 0, 1, None),  # rfft: bins 0..N/2
    ((2, 3, 12, 2), 2, 0, 0, None),  # complex, along another axis
    ((2, 12, 3, 2), 1, 1, 0, None),  # inverse
    ((2, 9, 3, 2), 1, 1, 1, None),  # irfft: a real signal of 16 from its 9 bins
    ((1, 10, 4, 1), 1, 0, 0, 16),  # zero-padded to dft_length
    ((1, 20, 4, 1), 1, 0, 1, 8),  # cut to dft_length
])
def test_a_dft_is_one_matrix_product_along_its_axis(shape: tuple[int, ...], axis: int, inverse: int, onesided: int,
                                                    length: int | None) -> None:
    x = RNG.standard_normal(shape).astype(np.float32)
    constants = {"axis": np.array(axis, np.int64)}
    inputs = ["x", "n" if length else "", "axis"]
    if length:
        constants["n"] = np.array(length, np.int64)
    node = helper.make_node("DFT", inputs, ["y"], inverse=inverse, onesided=onesided)
    matches(one_node(node, {"x": x}, constants, 20), {"x": x}, atol=1e-5)


@pytest.mark.parametrize("frame,step,window", [(64, 16, "hann"), (48, 12, "ones"), (32, 8, "none")])
def test_an_stft_is_a_conv_whose_filters_are_the_window_times_the_dft(frame: int, step: int, window: str) -> None:
    """A power-of-two frame runs as FFTs (lowering/dft.py recognises the filters), 48 as the Conv's GEMM."""
    signal = (RNG.standard_normal((2, 400, 1)) * 100).astype(np.float32)
    constants = {"step": np.array(step, np.int64), "length": np.array(frame, np.int64)}
    if window != "none":
        constants["window"] = (np.hanning(frame + 1)[:frame] if window == "hann" else np.ones(frame)).astype(np.float32)
    node = helper.make_node("STFT", ["signal", "step", "window" if window != "none" else "", "length"], ["y"])
    model = one_node(node, {"signal": signal}, constants, 17)
    graph = load_onnx(model).graph
    lower_spectral(graph)
    conv = next(n for n in graph.nodes if n.op_type == "Conv")
    assert (conv_plan(conv, graph).stft is not None) == (frame & (frame - 1) == 0)
    matches(model, {"signal": signal}, atol=1e-5)


def test_an_stft_with_a_run_time_window_runs_on_run_time_filters() -> None:
    signal = RNG.standard_normal((1, 256, 1)).astype(np.float32)
    window = RNG.uniform(0.5, 1, 32).astype(np.float32)
    node = helper.make_node("STFT", ["signal", "step", "window"], ["y"], onesided=0)
    model = one_node(node, {"signal": signal, "window": window}, {"step": np.array(16, np.int64)}, 17)
    matches(model, {"signal": signal, "window": window}, atol=1e-5)


@pytest.mark.parametrize("window", ["run-time", "constant", "none"])
def test_a_run_time_frame_step_serves_every_step_from_one_module(window: str) -> None:
    """frame_step an input (it was refused, and the backend suite's test_stft_with_window bound it): one module
    takes every step, each output with that step's frame count, as ONNX Runtime computes it; a step below 1 is
    refused naming the node."""
    signal = RNG.standard_normal((2, 200, 1)).astype(np.float32)
    values = {"window": RNG.uniform(0.5, 1, 32).astype(np.float32)}
    inputs = ["signal", "step", "window" if window != "none" else ""] + (["length"] if window == "none" else [])
    node = helper.make_node("STFT", inputs, ["y"], name="stft")
    constants = {"window": values["window"]} if window == "constant" else \
        {"length": np.array(32, np.int64)} if window == "none" else {}
    fed = {"signal": signal, **({"window": values["window"]} if window == "run-time" else {})}
    model = one_node(node, fed, constants, 17)
    model.graph.input.append(helper.make_tensor_value_info("step", TensorProto.INT64, []))
    module = WasmModel(convert_onnx(model).wasm)
    for step in (8, 1, 13, 32, 200):
        feeds = {**fed, "step": np.array(step, np.int64)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape, (step, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()), err_msg=f"{step}")
    for step in (0, -4):
        with pytest.raises(InputError, match=r"node 'stft' \(STFT\): its frame_step must be at least 1"):
            module.run({**fed, "step": np.array(step, np.int64)})


@pytest.mark.parametrize("opset", [19, 20])
def test_the_backend_suites_inverse_dft_is_exact_to_float32(opset: int) -> None:
    """ONNX's test_dft_inverse(_opset19): the inverse DFT of a ramp along an axis of 10. Its expected output is
    numpy's ifft of complex64, which numpy >= 2 computes in float32: where the exact result is 0 (the imaginary
    parts of bin 5) it holds 1.9e-7 of rounding noise, past the case's atol of 1e-7. The matrix product here
    (a float64 DFT matrix rounded once to float32) is within float32 rounding of the float64 ifft everywhere,
    and those exact zeros come out below 1e-12: nearer the truth than the suite's expected output."""
    ramp = np.arange(0, 100, dtype=np.float64).reshape(10, 10)
    x = np.stack((ramp, np.zeros_like(ramp)), axis=2).astype(np.float32).reshape(1, 10, 10, 2)
    node = (helper.make_node("DFT", ["x"], ["y"], inverse=1, axis=1) if opset == 19 else
            helper.make_node("DFT", ["x", "", "axis"], ["y"], inverse=1))
    model = one_node(node, {"x": x}, {} if opset == 19 else {"axis": np.array(1, np.int64)}, opset)
    got = WasmModel(convert_onnx(model).wasm).run({"x": x})["y"].astype(np.float64)
    exact = np.fft.ifft(ramp, axis=0)
    truth = np.stack((exact.real, exact.imag), axis=2).reshape(1, 10, 10, 2)
    assert np.abs(got - truth).max() <= 2 * np.finfo(np.float32).eps * np.abs(truth).max()
    assert np.abs(got[0, 5, :, 1]).max() < 1e-12  # bin 5's imaginary parts are exactly 0
    suite = np.fft.ifft(ramp.astype(np.complex64), axis=0)  # what the backend suite expects
    if suite.dtype == np.complex64:  # numpy >= 2 (numpy 1 computes it in complex128, and the case passes)
        assert np.abs(suite.imag[5] - exact.imag[5]).max() > 1e-7


@pytest.mark.parametrize("inverse,onesided,shape", [(0, 0, (2, 6, 8, 1)), (0, 1, (2, 6, 8, 1)), (1, 1, (2, 5, 4, 2)),
                                                    (1, 0, (3, 6, 6, 2))])
def test_a_run_time_axis_serves_every_axis_from_one_module(inverse: int, onesided: int,
                                                           shape: tuple[int, ...]) -> None:
    """The axis an input (it was refused, and the backend suite's cases bound it): one module runs the DFT along
    whichever axis each run names, positive or negative, each output at its own shape where the axes give different
    ones (an rfft's bins, an irfft's length), as ONNX Runtime does; an axis out of range (or the last one, the real
    and imaginary parts) is refused naming the node."""
    x = RNG.standard_normal(shape).astype(np.float32)
    node = helper.make_node("DFT", ["x", "", "axis"], ["y"], name="dft", inverse=inverse, onesided=onesided)
    model = one_node(node, {"x": x}, {}, 20)
    model.graph.input.append(helper.make_tensor_value_info("axis", TensorProto.INT64, []))
    module = WasmModel(convert_onnx(model).wasm)
    for axis in (1, 2, 0, -2, -3, -4):
        feeds = {"x": x, "axis": np.array(axis, np.int64)}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        assert got.shape == want.shape, (axis, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()), err_msg=f"{axis}")
    for axis in (3, -1, 4, -5):
        with pytest.raises(InputError, match=r"node 'dft' \(DFT\): its axis must lie in -4..-2 or 0..2"):
            module.run({"x": x, "axis": np.array(axis, np.int64)})


@pytest.mark.parametrize("step_input", [False, True])
def test_a_declared_frame_length_serves_every_length_from_one_module(step_input: bool) -> None:
    """frame_length an input sets the transform's size: undeclared it is refused by name, asking for its range;
    declared (--input-values length=6..20) one module carries a transform per length and gives ONNX Runtime's frames
    and bins for each, with a constant or a run-time frame_step (the backend suite's test_stft bound both); a length
    outside the range is refused naming the input, one longer than the signal naming the node."""
    signal = RNG.standard_normal((2, 18, 1)).astype(np.float32)
    node = helper.make_node("STFT", ["signal", "step", "", "length"], ["y"], name="stft")
    model = one_node(node, {"signal": signal}, {} if step_input else {"step": np.array(3, np.int64)}, 17)
    for name in ("length", "step") if step_input else ("length",):
        model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.INT64, []))
    with pytest.raises(UnsupportedModel, match=r"node 'stft'.*its frame_length is computed at run time.*declare its "
                                               r"range"):
        convert_onnx(model, input_values={"step": (1, 8)} if step_input else None)
    declared = {"length": (6, 20), **({"step": (0, 8)} if step_input else {})}
    module = WasmModel(convert_onnx(model, input_values=declared).wasm)
    fed = {"signal": signal}
    for length, step in ((6, 3), (16, 2), (9, 5), (18, 1), (7, 8)):
        feeds = {**fed, "length": np.array(length, np.int64), **({"step": np.array(step, np.int64)} if step_input
                                                                 else {})}
        want, got = ort_run(model, feeds)[0], module.run(feeds)["y"]
        if not step_input:
            assert got.shape[1] == (18 - length) // 3 + 1
        assert got.shape == want.shape, (length, step, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    with pytest.raises(InputError, match=r"input 'length': its values must lie in 6..20"):
        module.run({**fed, "length": np.array(21, np.int64), **({"step": np.array(1, np.int64)} if step_input
                                                                else {})})
    with pytest.raises(InputError, match=r"node 'stft' \(STFT\): its frame_length must lie in 6..18"):
        module.run({**fed, "length": np.array(19, np.int64), **({"step": np.array(1, np.int64)} if step_input
                                                                else {})})
