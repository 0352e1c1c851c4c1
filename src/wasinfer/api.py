"""The public Python API: compile a model to a module, load a module, run it. `wasinfer.compile` and
`wasinfer.load` are these (the `wasinfer convert` command and the server run the same compiler and runtime).

    import wasinfer

    module = wasinfer.compile("rec.onnx", input_shapes={"x": "1,3,48,32..1280"})  # any width 32..1280
    model = wasinfer.load(module)                       # or a .wasm path, or its bytes
    print(model.inputs)                                 # names, dtypes, shapes (-1 where a run decides)
    outputs = model.run({"x": image})                   # {name: numpy array}

A module is self-contained (code, weights, metadata): `module.save(path)` writes it; `wasinfer serve`,
the WASI command form and the browser run the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wasinfer.extras import extra_needed

if TYPE_CHECKING:
    import onnx

    from wasinfer.artifact.module import ConvertResult
    from wasinfer.runtime.wasm import WasmModel

# A dim: an int, a range (MIN, MAX) or (MIN, MAX, STEP), or the text --input-shape takes ("32..1280", "320..960:32").
Dim = int | str | tuple[int, int] | tuple[int, int, int]


def _shape_text(dims: str | Sequence[Dim]) -> str:
    """One input's dims as --input-shape writes them."""
    if isinstance(dims, str):
        return dims
    texts = []
    for dim in dims:
        if isinstance(dim, tuple):
            low, high, *step = dim
            texts.append(f"{low}..{high}" + (f":{step[0]}" if step else ""))
        else:
            texts.append(str(dim))
    return ",".join(texts)


def compile(source: str | Path | bytes | onnx.ModelProto, output: str | Path | None = None, *,
            input_shapes: Mapping[str, str | Sequence[Dim]] | None = None, max_batch: int | None = None,
            weights: str = "float32", simd: str = "auto", wasi: bool = False, quantize: str | None = None,
            calibration: Sequence[Mapping[str, np.ndarray]] | str | Path = (),
            input_values: Mapping[str, tuple[int, int] | tuple[float, float] | str] | None = None,
            max_iterations: int | None = None,
            sequences: Mapping[str, int | tuple[int, int] | str] | None = None,
            progress: Callable[[int, int], None] | None = None) -> ConvertResult:
    """Compile an ONNX model (a path, its bytes or a ModelProto) or a TensorFlow Lite file into a module.

    `input_shapes` gives each dynamic input's dims, as `wasinfer convert --input-shape` does: a dim is an int, a
    range `(MIN, MAX)` / `(MIN, MAX, STEP)` or its text `"32..1280"` (one module for every size in it), and a
    whole shape may be that command's text (`"1,3,48,32..1280"`). `input_values` gives the range of an integer
    input's values where they set an output's size or a Loop's trip count, as `--input-values` does:
    `{"repeats": (1, 8)}` or `{"repeats": "1..8"}` (one module for every value in it), or of a float input's values
    that a kernel reads (a Resize's scales: `{"scales": (0.5, 4.0)}`). `sequences` gives the count of a sequence
    input's tensors, as `--sequence` does: `{"s": 3}` (0..3), `{"s": (1, 3)}` or `{"s": "1..3"}`; the module then
    takes a list of arrays for it (docs/abi.md, "Sequences and optionals"). `max_batch`, `weights`, `simd`, `wasi`,
    `quantize`, `calibration` and `max_iterations` are the command's options of the same names (`wasinfer convert
    --help`).
    With `output`, the module is also written there (whole, or not at all). Raises `UnsupportedModel` listing
    every problem (nothing is produced then), `ValueError` for a bad option. `calibration` is the command's
    directory of .npy/.npz samples, or the samples themselves: `[{input: array}, ...]`.
    """
    with extra_needed("compiler", "wasinfer.compile"):  # say which extra is missing, as the CLI does
        from wasinfer.artifact.convert import convert_model
        from wasinfer.frontends import parse_shape_overrides
        from wasinfer.frontends.lists import parse_sequence_counts
        from wasinfer.passes.values import parse_input_values

    overrides = parse_shape_overrides([f"{name}={_shape_text(dims)}" for name, dims in (input_shapes or {}).items()])
    values = parse_input_values([f"{name}={span if isinstance(span, str) else '..'.join(map(str, span))}"
                                 for name, span in (input_values or {}).items()])
    counts = parse_sequence_counts([f"{name}={span if isinstance(span, (str, int)) else '..'.join(map(str, span))}"
                                    for name, span in (sequences or {}).items()])
    if isinstance(source, bytes):
        import onnx

        source = onnx.load_from_string(source)
    if isinstance(calibration, str | Path):  # a directory, as `--calibration DIR` (a str would read as samples)
        calibration = _read_calibration(source, Path(calibration))
    result = convert_model(source, overrides.shapes, max_batch=overrides.batch_limit(max_batch), progress=progress,
                           wasi=wasi, weights=weights, simd=simd, quantize=quantize,
                           calibration=[dict(sample) for sample in calibration], input_ranges=overrides.ranges,
                           input_values=values, max_iterations=max_iterations,
                           sequences=counts or None)
    if output is not None:
        result.save(output)
    return result


def _read_calibration(source: str | Path | onnx.ModelProto, directory: Path) -> list[dict[str, np.ndarray]]:
    """The samples in `directory`, by the model's input names, as `--calibration DIR` reads them."""
    import onnx

    from wasinfer.artifact.calibrate import model_inputs, read_samples

    model = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source), load_external_data=False)
    return read_samples(directory, model_inputs(model))


def load(module: str | Path | bytes | ConvertResult, *, deadline_ms: float | None = None,
         memory_limit_mb: float | None = None) -> WasmModel:
    """An instance of a module (a `compile` result, a .wasm path or its bytes), ready to `run`.

    `deadline_ms` bounds every run (a run past it raises `ModelFault`, and the instance is then spent: load
    again); `memory_limit_mb` caps the instance's memory. `model.inputs` / `model.outputs` describe the tensors
    (-1 where each run decides a dim, with its range); `model.run({name: array})` returns {name: array} (a sequence
    in or out is a list of arrays, an optional an array or None), and raises `InputError` naming the input and what
    is wrong with it."""
    from wasinfer.artifact.module import ConvertResult
    from wasinfer.runtime.wasm import WasmModel

    deadline = None if deadline_ms is None else deadline_ms / 1000
    limit = None if memory_limit_mb is None else int(memory_limit_mb * 2**20)
    if isinstance(module, ConvertResult):
        module = module.wasm
    if isinstance(module, bytes):
        return WasmModel(module, deadline_seconds=deadline, memory_limit_bytes=limit)
    return WasmModel.from_file(module, deadline_seconds=deadline, memory_limit_bytes=limit)


__all__ = ["Dim", "compile", "load"]
