"""`wasinfer convert --quantize int8 --calibration DIR`: a statically quantized model, calibrated on the user's samples.

The quantization itself is ONNX Runtime's (`onnxruntime.quantization.quantize_static`), what users of ONNX
models already trust and what the field compares against: QDQ format, int8 weights with one symmetric scale
per output channel, int8 activations with scales and zero points from the calibration samples' ranges
(MinMax). The compiler then fuses the QDQ patterns into its integer kernels (passes/int8.py), so the
quantized layers run in int8 and pass int8 values to each other; what has no integer kernel runs in float
between its DequantizeLinear and QuantizeLinear, as ONNX Runtime's own reference would.

Samples: a directory of `.npy` files (a model with one input: each file one run's input, at the shape the
module is compiled for) or `.npz` files (one array per input name). A handful of representative inputs is
typical (ONNX Runtime's examples use tens to hundreds); they never leave the machine.

What quantization cost is measured on the same samples, against the float model run by ONNX Runtime, and
reported by `convert` (largest and mean absolute difference per output; for outputs whose last axis holds
several classes, how often the argmax agrees).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

Feeds = dict[str, np.ndarray]


def read_samples(directory: Path, input_names: Sequence[str]) -> list[Feeds]:
    """Every sample in `directory` (sorted by file name); ValueError naming the file and what is wrong."""
    if not directory.is_dir():
        raise ValueError(f"--calibration {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".npy", ".npz"))
    if not files:
        raise ValueError(f"--calibration {directory}: no .npy or .npz files in it")
    samples = []
    for path in files:
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--calibration {path}: not a readable .npy/.npz file: {exc}") from None
        if path.suffix == ".npy":
            if len(input_names) != 1:
                raise ValueError(f"--calibration {path}: the model has {len(input_names)} inputs "
                                 f"({', '.join(input_names)}): give each sample as an .npz with one array per input")
            samples.append({input_names[0]: np.asarray(loaded)})
        else:
            with loaded:
                names = sorted(loaded.files)
                if names != sorted(input_names):
                    raise ValueError(f"--calibration {path}: holds {names}, the model's inputs are "
                                     f"{sorted(input_names)}")
                samples.append({name: np.asarray(loaded[name]) for name in input_names})
    return samples


def model_inputs(model: onnx.ModelProto) -> list[str]:
    """The graph inputs that are not initializers: what a sample must give."""
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol over the samples."""

    def __init__(self, samples: Sequence[Feeds]):
        self._samples: Iterator[Feeds] = iter(samples)

    def get_next(self) -> Feeds | None:
        return next(self._samples, None)


def quantize_static(model: onnx.ModelProto, samples: Sequence[Feeds]) -> onnx.ModelProto:
    """`model` quantized by ONNX Runtime (QDQ, per-channel symmetric int8 weights, int8 activations, MinMax)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice (pre-processing, rank-1 bias axes) on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="wasinfer-quantize-") as scratch:
            source, target = Path(scratch) / "float.onnx", Path(scratch) / "int8.onnx"
            onnx.save(model, str(source))
            ort_quantize_static(str(source), str(target), _Reader(samples), quant_format=QuantFormat.QDQ,
                                per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
            return onnx.load(str(target))
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class OutputDrop:
    """How far one output of the quantized module is from the float model's, over the samples."""

    name: str
    max_abs: float
    mean_abs: float
    argmax_agreement: float | None  # fraction of rows whose argmax is the same; None for single-value rows

    def describe(self) -> str:
        text = f"{self.name}: max |diff| {self.max_abs:.3g}, mean {self.mean_abs:.3g}"
        if self.argmax_agreement is not None:
            text += f", argmax agrees on {self.argmax_agreement:.1%}"
        return text


def accuracy_drop(run_quantized: Callable[[Feeds], Feeds], run_float: Callable[[Feeds], Sequence[np.ndarray]],
                  output_names: Sequence[str], samples: Sequence[Feeds]) -> list[OutputDrop]:
    """Each output's difference between the quantized module and the float model on `samples`."""
    diffs: dict[str, list[np.ndarray]] = {name: [] for name in output_names}
    agree: dict[str, list[bool]] = {name: [] for name in output_names}
    for feeds in samples:
        ours = run_quantized(feeds)
        theirs = dict(zip(output_names, run_float(feeds), strict=True))
        for name in output_names:
            got, want = np.asarray(ours[name], np.float64), np.asarray(theirs[name], np.float64)
            diffs[name].append(np.abs(got - want).reshape(-1))
            if want.ndim >= 1 and want.shape[-1] > 1 and got.shape == want.shape:
                agree[name].extend((got.argmax(-1) == want.argmax(-1)).reshape(-1).tolist())
    drops = []
    for name in output_names:
        every = np.concatenate(diffs[name]) if diffs[name] else np.zeros(0)
        votes = agree[name]
        drops.append(OutputDrop(name, float(every.max(initial=0.0)), float(every.mean()) if every.size else 0.0,
                                sum(votes) / len(votes) if votes else None))
    return drops
