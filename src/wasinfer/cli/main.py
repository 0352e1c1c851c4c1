"""`wasinfer` command line: parses, calls the parts, prints. Exit codes: 0 ok, 1 failed check,
2 bad input or unsupported model (nothing written)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wasinfer.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, console, error, errors, signature, warning, wasinfer_home
from wasinfer.extras import missing_extra
from wasinfer.fileio import atomic_write
from wasinfer.runtime import CompiledCache, InputError, WasmModel, make_engine
from wasinfer.version import __version__

if TYPE_CHECKING:
    from wasinfer.artifact.metadata import Metadata
    from wasinfer.artifact.validate import Report

# The compiler, the ONNX frontend and validation (onnx, onnxruntime) are imported by the commands
# that use them: `wasinfer serve`, `run` and `info` start without them (tens of MiB less resident).

# The optional dependency group each command needs (wasinfer/extras.py); the others run on the base install.
COMMAND_EXTRAS = {"convert": "compiler", "validate": "compiler", "demo": "demo", "serve": "serve",
                  **{command: "registry" for command in ("push", "pull", "sign", "models", "keys", "policy",
                                                         "package", "deploy")}}


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_convert(args: argparse.Namespace) -> int:
    from wasinfer.artifact.convert import convert_model
    from wasinfer.backends.wasm import UnsupportedModel
    from wasinfer.frontends import FrontendError, parse_shape_overrides
    from wasinfer.frontends.lists import parse_sequence_counts
    from wasinfer.passes.values import parse_input_values

    source = Path(args.model)
    output = Path(args.output) if args.output else source.with_suffix(".wasm")
    if not source.is_file():
        error(f"{source}: no such file")
        return EXIT_BAD_INPUT
    progress = Progress(TextColumn("compiling {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=errors, transient=True, disable=args.json)
    try:
        overrides = parse_shape_overrides(args.input_shape or [])
        max_batch = overrides.batch_limit(args.max_batch)
        values = parse_input_values(args.input_values or [])
        sequences = parse_sequence_counts(args.sequence or [])
        samples = _calibration_samples(source, args.quantize, args.calibration)
        with progress:
            task = progress.add_task(source.name, total=None)
            result = convert_model(
                source, overrides.shapes, max_batch=max_batch,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                wasi=args.wasi, weights=args.weights, simd=args.simd, quantize=args.quantize, calibration=samples,
                input_ranges=overrides.ranges, input_values=values, max_iterations=args.max_iterations,
                sequences=sequences or None,
            )
    except UnsupportedModel as exc:
        error(f"{source} cannot be compiled; {len(exc.problems)} problem(s):")
        for problem in exc.problems:
            errors.print(f"  - {problem}", markup=False, highlight=False)
        errors.print(f"nothing was written to {output}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except (FrontendError, ValueError) as exc:
        error(str(exc))
        errors.print(f"nothing was written to {output}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    atomic_write(output, result.wasm)
    stats = dict(result.stats, onnx_bytes=source.stat().st_size, output=str(output))
    drops = _quantization_drop(source, result.wasm, samples) if args.quantize else []
    if drops:
        stats["quantization"] = [vars(drop) for drop in drops]
    if args.json:
        print(json.dumps(stats, default=str))
        return 0
    table = Table(title=escape(f"{source.name} → {output}"), show_header=False)
    table.add_row("tensors", signature(result.metadata))
    table.add_row("ops", ", ".join(map(str, stats["ops"])))  # type: ignore[call-overload]
    table.add_row("nodes", f"{stats['nodes_in']} in ONNX → {stats['kernels']} kernels "
                  f"({stats['folded']} folded, {stats['bn_folded']} BN folded, {stats['activations_fused']} "
                  f"activations fused)")
    table.add_row("parameters", f"{stats['params']:,}")
    table.add_row("arena", f"{_fmt_bytes(stats['arena_bytes'])} (without reuse "  # type: ignore[arg-type]
                  f"{_fmt_bytes(stats['arena_bytes_without_reuse'])})")  # type: ignore[arg-type]
    table.add_row("size", f"{_fmt_bytes(stats['wasm_bytes'])} wasm, {_fmt_bytes(stats['onnx_bytes'])} "  # type: ignore[arg-type]
                  f"{result.metadata.source_format}")
    table.add_row("max batch", str(result.metadata.max_batch))
    if stats.get("weight_encoding", "float32") != "float32":
        table.add_row("weights", f"{stats['weight_encoding']}: {stats['compressed_tensors']} tensors, "
                      f"{_fmt_bytes(stats['compressed_float32_bytes'])} → "  # type: ignore[arg-type]
                      f"{_fmt_bytes(stats['compressed_stored_bytes'])}, expanded at start-up")  # type: ignore[arg-type]
    if drops:
        table.add_row("int8 vs float", f"on the {len(samples)} calibration samples: "
                      + "; ".join(drop.describe() for drop in drops))
    table.add_row("time", f"{stats['seconds']:.2f} s")
    console.print(table)
    return 0


def _calibration_samples(source: Path, quantize: str | None, calibration: str | None) -> list[dict[str, np.ndarray]]:
    """The samples `--calibration` names, for `--quantize int8`; ValueError for one flag without the other."""
    from wasinfer.artifact.calibrate import model_inputs, read_samples

    if calibration is not None and quantize is None:
        raise ValueError("--calibration is for --quantize int8 (static quantization); give both")
    if quantize is None:
        return []
    if calibration is None:
        raise ValueError("--quantize int8 needs --calibration DIR: a directory of .npy (one input) or .npz files "
                         "(one array per input) that look like real inputs; for smaller weights alone, use "
                         "--weights int8")
    import onnx

    try:
        names = model_inputs(onnx.load(str(source), load_external_data=False))
    except Exception as exc:  # protobuf's decode errors have no stable type
        raise ValueError(f"--quantize int8 quantizes ONNX models; {source} is not one: {exc}") from None
    return read_samples(Path(calibration), names)


def _quantization_drop(source: Path, wasm: bytes, samples: list[dict[str, np.ndarray]]) -> list[Any]:
    """How far the quantized module is from the float model (run by ONNX Runtime) on the calibration samples."""
    from wasinfer.artifact.calibrate import accuracy_drop
    from wasinfer.runtime.onnxruntime import OnnxRuntimeModel

    module = WasmModel(wasm, make_engine(interruptible=False))
    reference = OnnxRuntimeModel(source, threads=1, providers="cpu")
    names = module.output_names()

    def run_float(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = reference.run(feeds)
        return [outputs[name] for name in names]

    try:
        return accuracy_drop(module.run, run_float, names, samples)
    except InputError as exc:
        warning(f"the calibration samples do not fit the compiled module, so the quantization's effect was not "
                f"measured: {exc}")
        return []


def _load_inputs(specs: list[str], dtypes: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """NAME=FILE.npy each. np.save writes the ml_dtypes types (bfloat16, float8, ...) as raw bytes ('<V2',
    '<V1'), which np.load gives back as such: an input the model takes in such a type (`dtypes`) is read as it."""
    inputs = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            raise InputError(f"--input {spec!r}: expected NAME=FILE.npy")
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"--input {name}: cannot read {file}: {exc}") from exc
        wanted = np.dtype((dtypes or {}).get(name, array.dtype))
        if array.dtype.kind == "V" and not array.dtype.names and wanted.itemsize == array.dtype.itemsize:
            array = array.view(wanted)
        inputs[name] = array
    return inputs


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": report.ok, "checks": [c.__dict__ for c in report.checks]}))
        return
    table = Table(title="validation", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in report.checks:
        table.add_row(escape(check.name), "[green]ok[/]" if check.ok else "[red]FAILED[/]", escape(check.detail))
    console.print(table)


def cmd_validate(args: argparse.Namespace) -> int:
    from wasinfer.artifact.validate import validate

    path = Path(args.model)
    if not path.is_file():
        error(f"{path}: no such file")
        return EXIT_BAD_INPUT
    if args.input and not args.reference:
        error("--input gives the inputs of the parity check with ONNX Runtime: it needs --reference MODEL.onnx")
        return EXIT_BAD_INPUT
    try:
        given = _load_inputs(args.input or []) or None
    except InputError as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    runner = reference_runner = None
    if args.reference:
        from wasinfer.runtime.onnxruntime import OnnxRuntimeModel

        try:
            runner = WasmModel.from_file(path).run
        except Exception as exc:  # the report below says what is wrong with the module
            warning(f"cannot instantiate for parity: {exc}")
        try:
            reference_runner = OnnxRuntimeModel(args.reference, threads=1, providers="cpu").run
        except Exception as exc:  # onnxruntime's own errors for a file it cannot load
            message = f"{args.reference}: ONNX Runtime cannot load it: {exc}"
            error(message)
            return EXIT_BAD_INPUT
    try:
        report = validate(path, args.reference, samples=args.samples, given=given, runner=runner,
                          reference_runner=reference_runner)
    except InputError as exc:  # --input's tensors do not fit the module (a size outside a symbolic dim's range)
        error(f"the module refuses the inputs: {exc}")
        return EXIT_BAD_INPUT
    _print_report(report, args.json)
    return 0 if report.ok else EXIT_FAILED


def _module_error(path: Path) -> str | None:
    """What makes PATH no module to run or read, as the one line convert and validate print (a missing file, or
    a model given where its compiled module was meant), or None."""
    if not path.is_file():
        return f"{path}: no such file"
    with path.open("rb") as file:
        if file.read(4) != b"\0asm":
            return f"{path}: not a WebAssembly module (a source model? compile it first: wasinfer convert {path})"
    return None


def _load_lists(specs: list[str], metadata: Metadata) -> tuple[list[str], dict[str, Any]]:
    """The sequence and optional inputs among `--input` specs: NAME=FILE.npz holds a sequence's tensors in order
    (`np.savez(f, *tensors)`), NAME=FILE.npy an optional's tensor; an optional not given is absent (None).
    Returns the other specs and these values."""
    listed = {slot.name: slot for slot in metadata.list_inputs}
    rest: list[str] = []
    values: dict[str, Any] = {}
    for spec in specs:
        name, _, file = spec.partition("=")
        if name not in listed:
            rest.append(spec)
            continue
        dtypes = {t.name: t.dtype for t in metadata.inputs}
        element = listed[name].elements[0] if listed[name].elements else ""
        try:
            with np.load(file, allow_pickle=False) as archive:
                if not isinstance(archive, np.lib.npyio.NpzFile):
                    values[name] = np.asarray(archive)
                    continue
                keys = sorted(archive.files, key=lambda k: int(k.removeprefix("arr_")) if k.startswith("arr_") else 0)
                values[name] = [archive[k].astype(dtypes.get(element, archive[k].dtype), copy=False) for k in keys]
        except (OSError, ValueError) as exc:
            raise InputError(f"--input {name}: cannot read {file}: {exc}") from exc
    for slot in metadata.list_inputs:
        if slot.kind != "sequence" and slot.name not in values:
            values[slot.name] = None  # an optional not given: absent
    return rest, values


def cmd_run(args: argparse.Namespace) -> int:
    if problem := _module_error(Path(args.model)):
        error(problem)
        return EXIT_BAD_INPUT
    try:
        model = WasmModel.from_file(args.model, cache=CompiledCache())
        specs, lists = _load_lists(args.input or [], model.metadata)
        outputs = model.run({**_load_inputs(specs, {spec.name: spec.dtype for spec in model.inputs}), **lists})
    except (InputError, ValueError, FileNotFoundError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name, value in outputs.items():
        path = None if out_dir is None else out_dir / name.replace("/", "_")
        if value is None:  # an absent optional
            console.print(f"{name}: absent", markup=False, highlight=False)
            continue
        if isinstance(value, list):  # a sequence: NAME.npz, its tensors in order
            if path is not None:
                np.savez(path.with_suffix(".npz"), *value)
            console.print(f"{name}: a sequence of {len(value)}", markup=False, highlight=False)
            for index, element in enumerate(value):
                _print_tensor(f"{name}[{index}]", element)
            continue
        if path is not None:
            np.save(path.with_suffix(".npy"), value)
        _print_tensor(name, value)
    return 0


def _print_tensor(name: str, value: np.ndarray) -> None:
    preview = np.array2string(value.reshape(-1)[:10], precision=4, separator=", ")
    console.print(f"{name}: {value.dtype} {list(value.shape)} {preview}{' …' if value.size > 10 else ''}",
                  markup=False, highlight=False)


def cmd_info(args: argparse.Namespace) -> int:
    from wasinfer.artifact import read_metadata

    if problem := _module_error(Path(args.model)):
        error(problem)
        return EXIT_BAD_INPUT
    try:
        metadata = read_metadata(Path(args.model).read_bytes())
    except (OSError, ValueError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    from dataclasses import asdict

    print(json.dumps(asdict(metadata), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.web:
        from wasinfer.cli.webdemo import run_web_demo

        return run_web_demo(wasinfer_home(), console, args.host, args.port)
    from wasinfer.cli.demo import run_demo

    return run_demo(wasinfer_home(), console)


def cmd_serve(args: argparse.Namespace) -> int:
    from wasinfer.serving.cli import run

    return run(args, wasinfer_home(), console, errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasinfer",
        description="Compile ONNX and TensorFlow Lite models into self-contained WebAssembly modules, check\n"
        "and run them, publish them to a registry, and serve them over KServe v2 REST and gRPC.\n"
        "`wasinfer COMMAND --help` describes each command.",
        epilog="examples:\n"
        "  wasinfer demo                                     the built-in digits model, end to end\n"
        "  wasinfer convert model.onnx -o model.wasm         compile (--input-shape for dynamic dims)\n"
        "  wasinfer run model.wasm --input x=x.npy           run once on .npy inputs\n"
        "  wasinfer serve --model-repository models/         REST on 127.0.0.1:8000, gRPC on :8001",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wasinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="compile MODEL.onnx or MODEL.tflite into a .wasm module",
                       description="Compile an ONNX model (opsets before 9 are upgraded by ONNX's version converter) "
                       "or a TensorFlow Lite model (float32, or full-integer int8/uint8) into one self-contained "
                       "WebAssembly module: code, weights "
                       "and metadata. Exit code 2 lists every unsupported op; nothing is written then. "
                       "docs/compiler.md describes the pipeline.",
                       epilog="Examples: wasinfer convert model.onnx -o model.wasm; wasinfer convert rec.onnx "
                       "--input-shape x=1,3,48,32..1280 (every width 32 to 1280); wasinfer convert model.onnx "
                       "--input-shape x=1..8,3,224,224 (a batch of up to 8); wasinfer convert model.onnx --quantize "
                       "int8 --calibration samples/")
    p.add_argument("model", help="the .onnx or .tflite file (told apart by content)")
    p.add_argument("-o", "--output", help="output .wasm path (default: MODEL.wasm next to the model)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="fix the shape of an input with dynamic dims (repeatable); a dynamic leading dim is "
                   "the run-time batch and is compiled per sample: give it as a range 1..MAX (the same as "
                   "--max-batch MAX) or as 1; a range MIN..MAX on any other dim (x=1,3,48,32..1280), or on the "
                   "leading one from above 1 or beside another range, is a symbolic dim: one module runs every "
                   "size in it (ABI version 3); MIN..MAX:STEP takes only the multiples of STEP (320..960:32)")
    p.add_argument("--input-values", action="append", metavar="NAME=MIN..MAX",
                   help="the range of an int32/int64 input's values (repeatable), where they set an output's size "
                   "(a ConstantOfShape's shape, a Tile's repeats, a Pad's pads) or a Loop's trip count is computed "
                   "from them, or of a float input's values a kernel reads (a Resize's scales=0.5..4, its sizes): "
                   "one module runs every value in it, memory is planned for MAX, and a run with a value outside it "
                   "is refused naming the input")
    p.add_argument("--max-iterations", type=int, default=None, metavar="N",
                   help="the most iterations a Loop whose trip count has no bound the compiler can find may run "
                   "(ONNX's Range as its function body, with a float delta): it is unrolled to N, and a run whose "
                   "trip count is above N is refused naming the Loop")
    p.add_argument("--sequence", action="append", metavar="NAME=MAX",
                   help="the most tensors a sequence input may hold (repeatable): MAX, or MIN..MAX, or N..N for "
                   "exactly N; each is a tensor slot of the module (its dims from the model or --input-shape NAME=..., "
                   "which gives every element's) and, where the count varies, each run gives it (docs/abi.md)")
    p.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help="largest batch wasinfer_run accepts (default 1, or the MAX of an input's 1..MAX); needs a "
                   "dynamic leading dim")
    p.add_argument("--wasi", action="store_true", help="also export a WASI _start (npy on stdin → npy on stdout)")
    p.add_argument("--simd", choices=["auto", "plain", "relaxed"], default="auto",
                   help="auto (default): plain SIMD128 code, which every engine runs with the same results, plus a "
                   "variant with relaxed SIMD's fused multiply-add in Conv/Gemm/MatMul and sigmoid/tanh (10-40%% "
                   "faster there; results differ in the last bits) that wasinfer's runtime runs instead; plain: only "
                   "the first (a smaller file); relaxed: only the second (the engine must have relaxed SIMD: wasmtime "
                   "and Chrome 114+ do, Firefox and Safari not by default)")
    smaller = p.add_mutually_exclusive_group()
    smaller.add_argument("--quantize", choices=["int8"],
                         help="quantize an ONNX model statically with ONNX Runtime's quantizer (QDQ, int8 weights "
                         "with one symmetric scale per output channel, int8 activations), calibrated on "
                         "--calibration's samples, so that its matrix products run on int8 kernels; convert then "
                         "reports how far the outputs moved from the float model's on those samples")
    smaller.add_argument("--weights", choices=["float32", "fp16", "int8"], default="float32",
                         help="store large weights compressed, expanded to float32 at start-up (kernels run at "
                         "float32 speed): fp16 (2x smaller, about 3 significant digits; values beyond float16's "
                         "range stay float32) or int8 (about 4x smaller, one symmetric scale per output channel; "
                         "each weight moves by up to half its channel's step: check accuracy on your own data)")
    p.add_argument("--calibration", metavar="DIR",
                   help="for --quantize int8: a directory of samples, .npy files (a model with one input) or .npz "
                   "files (one array per input name), each one run's inputs at the compiled shapes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("validate", help="check a module's structure, ABI and (with --reference) parity",
                       description="Check that a module validates, carries wasinfer metadata, exports the "
                       "documented ABI consistently, and - with --reference - matches ONNX Runtime. Exit code 1 "
                       "when a check fails, 2 for a file that cannot be read.",
                       epilog="Example: wasinfer validate model.wasm --reference model.onnx --samples 16")
    p.add_argument("model", help="the .wasm module")
    p.add_argument("--reference", metavar="MODEL.onnx", help="the source model to compare against")
    p.add_argument("--samples", type=int, default=8, metavar="K", help="random input sets to compare (default 8)")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="use these inputs instead")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a module on .npy inputs",
                       description="Run a module once on the given inputs and print (or save) its outputs. "
                       "Its compiled machine code is cached ($WASINFER_CACHE, default ~/.cache/wasinfer/compiled), "
                       "so later runs skip compiling.",
                       epilog="Example: wasinfer run model.wasm --input x=x.npy --output-dir out/ (writes out/NAME.npy "
                       "for each output; `wasinfer info model.wasm` lists the input names, dtypes and shapes)")
    p.add_argument("model", help="the .wasm module")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="an input tensor (repeatable); a sequence input as FILE.npz, its tensors in order "
                   "(np.savez(f, *tensors)); an optional input not given is absent")
    p.add_argument("--output-dir", metavar="DIR", help="write each output to DIR/NAME.npy (a sequence: DIR/NAME.npz)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("info", help="print a module's metadata", description="Print the metadata section as JSON.")
    p.add_argument("model", help="the .wasm module")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="build, convert, validate and run the built-in digits model",
                       description="Train the built-in demo (an MLP on scikit-learn's bundled digits), export "
                       "it to ONNX, compile it, validate it against ONNX Runtime and classify the test split. "
                       "Files go to $WASINFER_HOME/demo (default ~/.wasinfer/demo). With --web, serve a page "
                       "instead where a digit drawn on a canvas is classified in the browser by the same module.")
    p.add_argument("--web", action="store_true", help="serve the browser demo (js/demo/) and the module until Ctrl+C")
    p.add_argument("--host", default="127.0.0.1", help="address of the --web page (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port of the --web page (default 8090; 0 picks one)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="serve models over KServe v2 REST and gRPC",
                       description="Serve a model repository (DIR/<name>/<version>/model.wasm, model.onnx or "
                       "model.tflite, run by wasmtime, ONNX Runtime or LiteRT; optional DIR/<name>/config.pbtxt, "
                       "Triton's model configuration, or config.json with its max_batch_size, dynamic_batching and "
                       "instance_group, plus instance_count, max_concurrency and fault_breaker) over "
                       "the KServe Open Inference Protocol v2, REST and gRPC, with Prometheus metrics at /metrics. "
                       "Models load on their first request. With no repository, serves the built-in digits demo "
                       "and prints a curl command to try it.")
    from wasinfer.serving.cli import add_arguments as add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    from wasinfer.cli.registry import add_commands as add_registry_commands

    add_registry_commands(sub)  # push, pull, sign, models
    from wasinfer.cli.trust import add_commands as add_trust_commands

    add_trust_commands(sub)  # keys, policy
    from wasinfer.cli.package import add_commands as add_package_commands

    add_package_commands(sub)  # package (an OCI container image of a model)
    from wasinfer.cli.deploy import add_commands as add_deploy_commands

    add_deploy_commands(sub)  # deploy render (Kubernetes manifests)
    from wasinfer.cli.guest import add_commands as add_guest_commands

    add_guest_commands(sub)  # run-guest (WASI-NN guest programs)
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command `args` names, `models show` and `deploy render` included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return _command_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args: Any
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, so its usage line shows what it takes (not `wasinfer COMMAND`)
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    except ModuleNotFoundError as exc:  # an optional dependency group that is not installed
        message = missing_extra(exc, COMMAND_EXTRAS.get(args.command))
        if message is None:
            raise
        error(f"wasinfer {args.command}: {message}")
        return EXIT_BAD_INPUT
    return code


if __name__ == "__main__":
    sys.exit(main())
