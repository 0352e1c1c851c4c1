"""`wasinfer demo`: the whole path of a model on the built-in digits MLP, with no services."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from wasinfer.artifact import convert_onnx
from wasinfer.artifact.validate import validate
from wasinfer.runtime import CompiledCache, WasmModel
from wasinfer.runtime.onnxruntime import OnnxRuntimeModel
from wasinfer.serving.demo import DEMO_MAX_BATCH, DEMO_MODEL


def run_demo(home: Path, console: Console) -> int:
    from wasinfer.registry.demo import ensure_demo_model, load_test_split

    directory = home / "demo"
    console.rule("[bold]wasinfer demo[/]: digits MLP → WebAssembly")
    onnx_path = ensure_demo_model(directory)
    x_test, y_test = load_test_split(directory)
    console.print(f"1. model    {onnx_path} ({onnx_path.stat().st_size:,} bytes), "
                  f"test split {len(y_test)} digits")

    result = convert_onnx(onnx_path, max_batch=DEMO_MAX_BATCH, name=DEMO_MODEL)
    wasm_path = directory / f"{DEMO_MODEL}.wasm"
    tmp = wasm_path.with_suffix(".wasm.tmp")
    tmp.write_bytes(result.wasm)
    tmp.replace(wasm_path)
    console.print(f"2. convert  {wasm_path} ({len(result.wasm):,} bytes, {result.stats['seconds']:.2f} s, "
                  f"arena {result.metadata.arena_bytes:,} bytes)")

    model = WasmModel.from_file(wasm_path, cache=CompiledCache())
    reference = OnnxRuntimeModel(onnx_path, threads=1, providers="cpu")
    report = validate(wasm_path, onnx_path, samples=4, runner=model.run, reference_runner=reference.run)
    passed = sum(c.ok for c in report.checks)
    console.print(f"3. validate {passed}/{len(report.checks)} checks passed "
                  f"({'[green]ok[/]' if report.ok else '[red]FAILED[/]'}); {report.checks[-1].name}: "
                  f"{report.checks[-1].detail}")
    for check in report.checks:
        if not check.ok:
            console.print(f"   [red]FAILED[/] {check.name}: {check.detail}")
    if not report.ok:
        return 1

    predictions = []
    input_name = model.input_names()[0]
    label_name = model.output_names()[0]
    for start in range(0, len(x_test), DEMO_MAX_BATCH):
        batch = x_test[start:start + DEMO_MAX_BATCH]
        predictions.append(model.run({input_name: batch})[label_name].reshape(-1))
    predicted = np.concatenate(predictions)
    accuracy = float(np.mean(predicted == y_test))
    console.print("4. run      first 20 predictions: " + " ".join(str(int(p)) for p in predicted[:20]))
    console.print("           first 20 true labels: " + " ".join(str(int(t)) for t in y_test[:20]))
    console.print(f"   accuracy on the test split: [bold]{accuracy:.2%}[/] ({int(np.sum(predicted == y_test))}"
                  f"/{len(y_test)})")
    return 0 if accuracy >= 0.95 else 1
