"""Run ONNX's backend test suite against wasinfer and write docs/conformance.md.

Every case comes from the `onnx` wheel, nothing is downloaded: the ~1,900 node cases are
built in memory (`load_model_tests(kind="node")`), the model cases are files under
onnx/backend/test/data/{real→light, simple, pytorch-converted, pytorch-operator}. A case is
run the way onnx's own runner (onnx/backend/test/runner) runs it — same inputs (the light
models get the runner's generated input), same expected outputs, same comparison
(`Runner.assert_similar_outputs` with the case's rtol/atol) — through `WasinferBackend`.

A case is `passed`, `failed` (wrong or missing output, a compile crash, a trap, a timeout) or
`unsupported` (the compiler declined it: `UnsupportedModel` or `FrontendError`). Cases run in a
pool of forked workers (2 by default, the CI machine's cores) with a per-case timeout; a
worker is killed and replaced when its case hangs or after a big model, to bound memory.

    python scripts/conformance.py                  # full run → docs/conformance.md
    python scripts/conformance.py --write-expected # also → tests/conformance/expected_pass.txt
    python scripts/conformance.py --only 'relu|abs' --kinds node   # a quick look, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import multiprocessing
import os
import platform
import re
import sys
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkContext, ForkProcess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case.test_case import TestCase
from onnx.backend.test.loader import DATA_DIR, load_model_tests
from onnx.backend.test.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conformance.md"
EXPECTED = ROOT / "tests" / "conformance" / "expected_pass.txt"
# Our label for each on-disk kind; onnx calls the light models' kind "real" (their data.json
# points at onnx/backend/test/data/light/*.onnx).
MODEL_KINDS = {"real": "light", "simple": "simple", "pytorch-converted": "pytorch-converted",
               "pytorch-operator": "pytorch-operator"}
KINDS = ("node", *MODEL_KINDS.values())
LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                "squeezenet", "vgg19", "zfnet512")
# The ops that exported edge models (OCR, speech, detection, transformers) need beyond plain CNNs:
# reported together, registered or not, in the order given.
EDGE_MODEL_OPS = (
    "Resize", "Upsample", "ConvTranspose", "Pad", "Slice", "Gather", "GatherElements", "Expand", "Split", "Tile",
    "Where", "Equal", "Greater", "Less", "Not", "And", "Or", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Softplus", "Softsign", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Pow", "Reciprocal", "Abs", "Neg", "Floor", "Ceil",
    "Round", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare",
    "ReduceLogSumExp", "Shape", "Range", "CumSum", "TopK", "LayerNormalization", "InstanceNormalization", "MatMul",
    "Einsum", "LSTM", "GRU", "DepthToSpace", "SpaceToDepth", "QuantizeLinear", "DequantizeLinear", "If")
# How the ops of that set without a kernel of their own are handled.
HANDLED_WITHOUT_KERNEL = {"Shape": "folded (static shapes)", "Range": "folded (constant inputs)",
                          "Einsum": "lowered to MatMul etc.", "If": "inlined (constant condition)"}
EXPANDED = re.compile(r"_expanded(_ver\d+)?$")
MISSING_OP = re.compile(r"op (\S+) is not supported")


@dataclass(frozen=True)
class Case:
    kind: str  # one of KINDS
    name: str  # onnx's test name, e.g. test_relu
    test: TestCase = field(compare=False, repr=False)
    op: str = ""  # node cases: "Relu", or "ai.onnx.ml.Scaler" outside the default domain
    expanded: bool = False  # a function op's body, case name ending in _expanded

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Result:
    key: str
    status: str  # passed | failed | unsupported
    reason: str = ""
    max_abs_err: float | None = None
    missing_ops: list[str] = field(default_factory=list)
    convert_s: float = 0.0
    jit_s: float = 0.0
    run_s: float = 0.0
    wasm_bytes: int = 0
    seconds: float = 0.0
    bound: list[str] = field(default_factory=list)  # parameter inputs the backend bound to their values


def op_label(domain: str, op_type: str) -> str:
    return op_type if domain in ("", "ai.onnx") else f"{domain}.{op_type}"


def node_cases() -> list[Case]:
    """Node cases, each mapped to its op; an _expanded case to the op of the case it expands."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators' own numpy overflow warnings
        tests = load_model_tests(kind="node")
    ops = {t.name: op_label(t.model.graph.node[0].domain, t.model.graph.node[0].op_type)
           for t in tests if t.model is not None and t.model.graph.node}
    cases = []
    for test in tests:
        expanded = bool(EXPANDED.search(test.name))
        op = ops.get(EXPANDED.sub("", test.name) if expanded else test.name, "")
        cases.append(Case("node", test.name, test, op, expanded))
    return cases


def model_cases(onnx_kind: str) -> list[Case]:
    label = MODEL_KINDS[onnx_kind]
    return [Case(label, t.name, t) for t in sorted(load_model_tests(kind=onnx_kind), key=lambda t: t.name)]


def load_cases(kinds: Iterable[str] = KINDS) -> list[Case]:
    wanted = set(kinds)
    cases = node_cases() if "node" in wanted else []
    for onnx_kind, label in MODEL_KINDS.items():
        if label in wanted:
            cases += model_cases(onnx_kind)
    return cases


DataSet = tuple[list[Any], list[Any]]


def _tensor(item: Any) -> Any:
    return numpy_helper.to_array(item) if isinstance(item, onnx.TensorProto) else item


def _load_pb(path: str, type_proto: onnx.TypeProto) -> Any:
    """Like Runner._load_proto: a tensor, sequence or optional, by the model's declared type."""
    raw = Path(path).read_bytes()
    if type_proto.HasField("sequence_type"):
        sequence = onnx.SequenceProto()
        sequence.ParseFromString(raw)
        return numpy_helper.to_list(sequence)
    if type_proto.HasField("optional_type"):
        optional = onnx.OptionalProto()
        optional.ParseFromString(raw)
        return numpy_helper.to_optional(optional)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(raw)
    return numpy_helper.to_array(tensor)


def light_model_path(case: Case) -> Path:
    assert case.test.url is not None
    return Path(DATA_DIR).parent.parent.parent.parent / case.test.url


def light_inputs(model: onnx.ModelProto) -> list[np.ndarray]:
    """The runner's input for a light model: arange(n) / n over the declared shape (seed unused)."""
    initializers = {i.name for i in model.graph.initializer}
    return [Runner.generate_dummy_data(x, seed=0, name=model.graph.name, random=False)
            for x in model.graph.input if x.name not in initializers]


def case_data(case: Case) -> tuple[onnx.ModelProto, list[DataSet]]:
    """The model and its (inputs, expected outputs) pairs, exactly as onnx's runner builds them."""
    if case.kind == "node":
        assert case.test.model is not None and case.test.data_sets is not None
        return case.test.model, [([_tensor(i) for i in ins], [_tensor(o) for o in outs])
                                 for ins, outs in case.test.data_sets]
    if case.kind == "light":
        path = light_model_path(case)
        model = onnx.load(str(path))
        expected = [numpy_helper.to_array(onnx.load_tensor(str(path.with_suffix("")) + f"_output_{i}.pb"))
                    for i in range(len(model.graph.output))]
        return model, [(light_inputs(model), expected)]
    assert case.test.model_dir is not None
    model = onnx.load(os.path.join(case.test.model_dir, "model.onnx"))
    data_sets = []
    for directory in sorted(glob.glob(os.path.join(case.test.model_dir, "test_data_set*"))):
        count_in = len(glob.glob(os.path.join(directory, "input_*.pb")))
        count_out = len(glob.glob(os.path.join(directory, "output_*.pb")))
        inputs = [_load_pb(os.path.join(directory, f"input_{i}.pb"), model.graph.input[i].type)
                  for i in range(count_in)]
        outputs = [_load_pb(os.path.join(directory, f"output_{i}.pb"), model.graph.output[i].type)
                   for i in range(count_out)]
        data_sets.append((inputs, outputs))
    return model, data_sets


def _comparable(want: Any, got: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as float64 when they are numeric tensors of one shape, else None."""
    if not isinstance(want, np.ndarray) or not isinstance(got, np.ndarray):
        return None
    if got.shape != want.shape or want.dtype == object or got.dtype == object:
        return None
    return want.astype(np.float64), got.astype(np.float64)


def max_abs_error(expected: list[Any], actual: list[Any]) -> float | None:
    """The largest finite |actual - expected| over all comparable outputs."""
    errors = []
    for want, got in zip(expected, actual, strict=False):
        pair = _comparable(want, got)
        if pair is not None:
            finite = np.isfinite(pair[0]) & np.isfinite(pair[1])
            errors.append(float(np.max(np.abs(pair[1][finite] - pair[0][finite]), initial=0.0)))
    return max(errors) if errors else None


def mismatch(expected: list[Any], actual: list[Any], rtol: float, atol: float) -> str:
    """One line on the first output that differs."""
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if not isinstance(want, np.ndarray) or not isinstance(got, np.ndarray):
            if type(want) is not type(got):
                return f"output {i}: {type(got).__name__}, expected {type(want).__name__}"
            continue
        if got.shape != want.shape:
            return f"output {i}: shape {list(got.shape)}, expected {list(want.shape)}"
        if got.dtype != want.dtype:
            return f"output {i}: dtype {got.dtype}, expected {want.dtype}"
        pair = _comparable(want, got)
        if pair is None:
            if not np.array_equal(want, got):
                return f"output {i}: values differ"
            continue
        bad = ~np.isclose(pair[1], pair[0], rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            finite = np.isfinite(pair[0]) & np.isfinite(pair[1])
            err = float(np.max(np.abs(pair[1][finite] - pair[0][finite]), initial=0.0))
            nan = " (NaN/inf differ)" if (bad & ~finite).any() else ""
            return (f"output {i}: max abs err {err:.3g}, {int(bad.sum())}/{bad.size} elements outside "
                    f"rtol={rtol:g} atol={atol:g}{nan}")
    return "outputs differ"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:240]


def run_case(case: Case) -> Result:
    """Prepare and run one case through the backend; never raises."""
    from wasinfer.frontends.onnx import FrontendError
    from wasinfer.ir import UnsupportedModel
    from wasinfer.runtime.onnx_backend import WasinferBackend

    started = time.perf_counter()
    result = Result(case.key, "failed")
    try:
        model, data_sets = case_data(case)
    except Exception as exc:
        result.reason = f"loading the case: {one_line(exc)}"
        return result
    try:
        rep = WasinferBackend.prepare(model, "CPU")
        for inputs, expected in data_sets:
            run_started = time.perf_counter()
            outputs = list(rep.run(inputs))
            result.run_s += time.perf_counter() - run_started
            err = max_abs_error(expected, outputs)
            if err is not None:
                result.max_abs_err = max(err, result.max_abs_err or 0.0)
            try:
                Runner.assert_similar_outputs(expected, outputs, rtol=case.test.rtol, atol=case.test.atol)
            except (AssertionError, TypeError):
                result.reason = mismatch(expected, outputs, case.test.rtol, case.test.atol)
                break
        else:
            result.status = "passed"
        result.bound = sorted(rep.bound)
        result.convert_s = rep.stats.get("convert_s", 0.0)
        result.jit_s = rep.stats.get("jit_s", 0.0)
        result.wasm_bytes = int(rep.stats.get("wasm_bytes", 0))
    except UnsupportedModel as exc:
        result.status = "unsupported"
        result.missing_ops = sorted({m.group(1) for p in exc.problems if (m := MISSING_OP.search(p))})
        more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        result.reason = (exc.problems[0] if exc.problems else str(exc))[:240] + more
    except FrontendError as exc:
        result.status, result.reason = "unsupported", f"frontend: {one_line(exc)}"
    except Exception as exc:
        result.reason = one_line(exc)
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------- the pool

_CASES: list[Case] = []  # set before forking, so workers get the in-memory node cases for free


def _serve(conn: Connection) -> None:
    warnings.simplefilter("ignore")
    while (index := conn.recv()) is not None:
        conn.send(asdict(run_case(_CASES[index])))


class Worker:
    """A forked process that runs one case at a time, killed when its case overruns."""

    def __init__(self, context: ForkContext):
        self.conn, child = context.Pipe()
        self.process: ForkProcess = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.index: int | None = None
        self.started = 0.0

    def assign(self, index: int) -> None:
        self.index, self.started = index, time.perf_counter()
        self.conn.send(index)

    def stop(self) -> None:
        if self.process.is_alive():
            if self.index is None:
                with contextlib.suppress(OSError):
                    self.conn.send(None)
                self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self.conn.close()


def run_all(cases: list[Case], jobs: int, timeout: float, model_timeout: float,
            progress: Any = None) -> dict[str, Result]:
    """Run every case in `jobs` workers; a case past its timeout, or a crashed worker, is a failure."""
    _CASES[:] = cases
    context = multiprocessing.get_context("fork")
    # Biggest first, so the pool does not end waiting on one long model.
    rank = {kind: n for n, kind in enumerate(("light", "pytorch-converted", "pytorch-operator", "simple", "node"))}
    order = deque(sorted(range(len(cases)), key=lambda i: (rank[cases[i].kind], cases[i].name)))
    workers = [Worker(context) for _ in range(min(jobs, len(cases)) or 1)]
    results: dict[str, Result] = {}

    def finish(worker: Worker, result: Result, restart: bool) -> Worker:
        results[result.key] = result
        if progress is not None:
            progress(result)
        worker.index = None
        if not restart:
            return worker
        worker.stop()
        return Worker(context)

    try:
        while order or any(w.index is not None for w in workers):
            for worker in workers:
                if worker.index is None and order:
                    worker.assign(order.popleft())
            busy = {w.conn: w for w in workers if w.index is not None}
            ready = wait(list(busy), timeout=1.0)
            for n, worker in enumerate(workers):
                if worker.index is None:
                    continue
                case = cases[worker.index]
                limit = timeout if case.kind == "node" else model_timeout
                if worker.conn in ready:
                    try:
                        result = Result(**worker.conn.recv())
                    except (EOFError, OSError):
                        worker.process.join(1)
                        code = worker.process.exitcode
                        result = Result(case.key, "failed", f"worker died (exit code {code})")
                        workers[n] = finish(worker, result, restart=True)
                        continue
                    workers[n] = finish(worker, result, restart=case.kind == "light")
                elif time.perf_counter() - worker.started > limit:
                    result = Result(case.key, "failed", f"timeout: still running after {limit:g} s",
                                    seconds=limit)
                    workers[n] = finish(worker, result, restart=True)
    finally:
        for worker in workers:
            if worker.index is not None:
                worker.process.kill()
            worker.stop()
    return results


# ---------------------------------------------------------------------------- the report

def registered_ops() -> list[str]:
    from wasinfer.backends.wasm import supported_ops

    return [op_label(domain, op) for domain, op in supported_ops()]


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    unsupported: int = 0

    def add(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.unsupported

    def cells(self) -> list[str]:
        return [str(self.total), str(self.passed), str(self.failed), str(self.unsupported)]


def tally(results: Iterable[Result]) -> Tally:
    counts = Tally()
    for result in results:
        counts.add(result.status)
    return counts


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KiB"


def by_op(cases: list[Case], results: dict[str, Result]) -> dict[str, tuple[list[Result], list[Result]]]:
    """op → (its direct cases' results, its _expanded cases' results)."""
    ops: dict[str, tuple[list[Result], list[Result]]] = {}
    for case in cases:
        if case.kind == "node" and case.key in results:
            ops.setdefault(case.op, ([], []))[case.expanded].append(results[case.key])
    return ops


def _bound(results: Iterable[Result]) -> int:
    """Passing cases that needed parameter inputs bound to their values (see the doc's header)."""
    return sum(1 for r in results if r.status == "passed" and r.bound)


def render(cases: list[Case], results: dict[str, Result], elapsed: float, jobs: int) -> str:
    registered = registered_ops()
    ops = by_op(cases, results)
    node = [results[c.key] for c in cases if c.kind == "node" and c.key in results]
    lines = [
        "# ONNX backend conformance",
        "",
        "Generated by `scripts/conformance.py` (do not edit by hand): ONNX's own backend test suite, shipped in the",
        "`onnx` wheel, run through `wasinfer.runtime.onnx_backend.WasinferBackend` with onnx's comparison",
        "(`Runner.assert_similar_outputs`, rtol 1e-3 / atol 1e-7 unless a case sets its own).",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        f"- onnx {onnx.__version__}, wasinfer {version('wasinfer')}, wasmtime {version('wasmtime')}",
        f"- run: {len(results)} cases in {elapsed:.0f} s with {jobs} worker processes",
        "- `unsupported`: the compiler declined the model (op not registered, or an attribute/dtype its `check`",
        "  rejects); `failed`: wrong output, crash, trap or timeout.",
        "- Many node cases feed an op's parameters (Slice starts, Pad pads, Resize scales, Reduce axes, TopK k...)",
        "  as graph inputs, where exported models hold constants or shape subgraphs that fold. The compiler needs",
        "  them at compile time, so the backend binds such inputs to the values a case runs with (one module per",
        "  value; `wasinfer.runtime.onnx_backend`), which `wasinfer convert` cannot do for a model's real inputs.",
        f"  Such passes are counted apart (`of those passed: bound`): {_bound(node)} of the passing node cases.",
        "",
        "## Summary",
        "",
    ]
    rows = [["node (registered ops, direct)",
             *tally(r for op in registered for r in ops.get(op, ([], []))[0]).cells()],
            ["node (registered ops, _expanded)",
             *tally(r for op in registered for r in ops.get(op, ([], []))[1]).cells()],
            ["node (all)", *tally(node).cells()]]
    for kind in MODEL_KINDS.values():
        kind_results = [results[c.key] for c in cases if c.kind == kind and c.key in results]
        if kind_results:
            rows.append([kind, *tally(kind_results).cells()])
    lines += _md_table(["cases", "total", "passed", "failed", "unsupported"], rows)
    lines += ["", "## Node cases by registered op", "",
              "Direct cases run the op itself; `_expanded` cases run its function body (other ops).", ""]
    rows = []
    for op in registered:
        direct, expanded = ops.get(op, ([], []))
        d, e = tally(direct), tally(expanded)
        rows.append([op, *d.cells(), str(_bound(direct)), f"{e.passed}/{e.total}" if e.total else "-"])
    lines += _md_table(["op", "cases", "passed", "failed", "unsupported", "of those passed: bound",
                        "_expanded passed"], rows)
    lines += ["", "## The edge-model op set", "",
              "The ops that exported OCR, speech, detection and transformer models need beyond plain CNNs, each",
              "with its node cases whether or not it has a kernel (Shape and Range fold at compile time; Einsum is",
              "lowered to Transpose/Reshape/MatMul/ReduceSum).", ""]
    rows = []
    for op in EDGE_MODEL_OPS:
        direct, expanded = ops.get(op, ([], []))
        d, e = tally(direct), tally(expanded)
        how = HANDLED_WITHOUT_KERNEL.get(op, "kernel" if op in registered else "-")
        rows.append([op, how, *d.cells(), str(_bound(direct)), f"{e.passed}/{e.total}" if e.total else "-"])
    lines += _md_table(["op", "how", "cases", "passed", "failed", "unsupported", "of those passed: bound",
                        "_expanded passed"], rows)
    lines += ["", "### Registered ops: cases that do not pass", ""]
    any_listed = False
    for op in registered:
        direct, expanded = ops.get(op, ([], []))
        bad = sorted((r for r in direct + expanded if r.status != "passed"),
                     key=lambda r: (r.status != "failed", r.key))
        if bad:
            any_listed = True
            lines += [f"**{op}**", ""]
            lines += [f"- `{r.key.split('/', 1)[1]}` — {r.status}: {r.reason}" for r in bad]
            lines.append("")
    if not any_listed:
        lines += ["Every case of every registered op passes.", ""]
    others = sorted(op for op in ops if op not in registered)
    passing_others = [op for op in others if any(r.status == "passed" for r in ops[op][0] + ops[op][1])]
    if passing_others:
        lines += ["## Node cases of other ops that pass", "",
                  "Ops with no kernel of their own whose cases still pass: views (Reshape, Identity...), or folded "
                  "at compile time because every input is constant.", ""]
        rows = [[op, *tally(ops[op][0]).cells(), f"{tally(ops[op][1]).passed}/{tally(ops[op][1]).total}"]
                for op in passing_others]
        lines += _md_table(["op", "cases", "passed", "failed", "unsupported", "_expanded passed"], rows)
        lines.append("")
    failing_others = sorted((r for op in others for r in ops[op][0] + ops[op][1] if r.status == "failed"),
                            key=lambda r: r.key)
    if failing_others:
        lines += ["## Node cases of other ops that fail (rather than being declined)", "",
                  "An op without a kernel should be declined with a reason; these crash or compute a wrong result",
                  "instead (frontend, pass or runtime bugs, not kernel bugs).", ""]
        lines += [f"- `{r.key.split('/', 1)[1]}` — {r.reason}" for r in failing_others]
        lines.append("")
    rest = [op for op in others if op not in passing_others]
    if rest:
        lines += ["## Node cases of other ops (none pass)", "",
                  ", ".join(f"{op or '?'} ({len(ops[op][0]) + len(ops[op][1])})" for op in rest), ""]
    lines += render_models(cases, results)
    return "\n".join(lines).rstrip() + "\n"


def render_models(cases: list[Case], results: dict[str, Result]) -> list[str]:
    lines: list[str] = []
    light = [c for c in cases if c.kind == "light" and c.key in results]
    if light:
        lines += ["## Light models", "",
                  "The nine architectures with their real graphs and uniform weights, input `arange(n)/n` as onnx's",
                  "runner generates it, compared with the shipped `light_*_output_0.pb`. `convert` is wasinfer's",
                  "compile (frontend, passes, codegen), `jit` wasmtime's compile of the module, `run` one inference.",
                  "Their weights are uniform, so all 1000 logits are equal and every model but densenet121 expects",
                  "softmax's 0.001 everywhere: a pass here shows a finite, well-shaped output.",
                  "`tests/conformance/test_light_models.py` also compares the logits, which depend on every layer,",
                  "with ONNX Runtime.",
                  ""]
        rows = []
        for case in light:
            r = results[case.key]
            timed = r.wasm_bytes > 0
            rows.append([case.test.model_name, r.status, f"{r.convert_s:.1f} s" if timed else "-",
                         f"{r.jit_s:.1f} s" if timed else "-", f"{r.run_s * 1000:.0f} ms" if r.run_s else "-",
                         _size(r.wasm_bytes) if timed else "-",
                         f"{r.max_abs_err:.2g}" if r.max_abs_err is not None else "-",
                         f"ops not supported: {', '.join(r.missing_ops)}" if r.missing_ops else r.reason])
        lines += _md_table(["model", "result", "convert", "jit", "run", "wasm", "max abs err", "reason"], rows)
        lines.append("")
    for kind in ("simple", "pytorch-converted", "pytorch-operator"):
        kind_results = [results[c.key] for c in cases if c.kind == kind and c.key in results]
        if not kind_results:
            continue
        counts = tally(kind_results)
        lines += [f"## {kind} models", "",
                  f"{counts.total} cases: {counts.passed} passed, {counts.failed} failed, "
                  f"{counts.unsupported} unsupported.", ""]
        passed = [r.key.split("/", 1)[1] for r in kind_results if r.status == "passed"]
        if passed:
            lines += ["Passed: " + ", ".join(f"`{n}`" for n in passed), ""]
        failed = [r for r in kind_results if r.status == "failed"]
        if failed:
            lines += ["Failed:", ""] + [f"- `{r.key.split('/', 1)[1]}` — {r.reason}" for r in failed] + [""]
        missing = Counter(op for r in kind_results for op in r.missing_ops)
        if missing:
            lines += ["Ops missing in the unsupported cases (cases needing each): "
                      + ", ".join(f"{op} ({n})" for op, n in missing.most_common()), ""]
        other = Counter(general_reason(r.reason) for r in kind_results
                        if r.status == "unsupported" and not r.missing_ops)
        if other:
            lines += ["Other reasons for unsupported cases: "
                      + "; ".join(f"{reason} ({n})" for reason, n in other.most_common()), ""]
    return lines


def general_reason(reason: str) -> str:
    """A reason without the node and tensor names, so equal causes group together."""
    reason = re.sub(r" \(\+\d+ more\)$", "", reason)
    return re.sub(r"(node|tensor|input) '[^']*'", r"\1", reason)


def expected_pass(results: dict[str, Result]) -> list[str]:
    """Cases that must keep passing (the light models have their own test)."""
    return sorted(k for k, r in results.items() if r.status == "passed" and not k.startswith("light/"))


def print_summary(cases: list[Case], results: dict[str, Result], elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ONNX backend conformance ({elapsed:.0f} s)")
    for column in ("cases", "total", "passed", "failed", "unsupported"):
        table.add_column(column, justify="left" if column == "cases" else "right")
    registered = set(registered_ops())
    node_registered = [results[c.key] for c in cases if c.kind == "node" and c.op in registered and c.key in results]
    table.add_row("node (registered ops)", *tally(node_registered).cells())
    for kind in KINDS:
        kind_results = [results[c.key] for c in cases if c.kind == kind and c.key in results]
        if kind_results:
            table.add_row(kind, *tally(kind_results).cells())
    console = Console()
    console.print(table)
    for result in sorted(node_registered, key=lambda r: r.key):
        if result.status == "failed":
            console.print(f"[red]FAIL[/red] {result.key}: {result.reason}", highlight=False)
    for case in cases:
        if case.kind == "light" and case.key in results:
            r = results[case.key]
            console.print(f"{case.key}: {r.status} convert {r.convert_s:.1f} s, jit {r.jit_s:.1f} s, "
                          f"run {r.run_s * 1000:.0f} ms, {_size(r.wasm_bytes)} {r.reason}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per node case (default 60)")
    parser.add_argument("--model-timeout", type=float, default=600.0, help="seconds per model case (default 600)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--only", help="regex on case names; a filtered run writes nothing unless --output is given")
    parser.add_argument("--output", type=Path, help=f"the report (default {DOC.relative_to(ROOT)} on a full run)")
    parser.add_argument("--write-expected", action="store_true",
                        help=f"write the passing cases to {EXPECTED.relative_to(ROOT)} (full run only)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    full = set(kinds) == set(KINDS) and not args.only
    if args.write_expected and not full:
        parser.error("--write-expected needs a full run (no --kinds, no --only)")

    cases = load_cases(kinds)
    if args.only:
        pattern = re.compile(args.only)
        cases = [c for c in cases if pattern.search(c.name)]
    registered_ops()  # import the kernels once, before forking
    started = time.perf_counter()
    done = 0

    def progress(result: Result) -> None:
        nonlocal done
        done += 1
        if done % 100 == 0 or not result.key.startswith("node/"):
            print(f"[{done}/{len(cases)} {time.perf_counter() - started:.0f} s] {result.key}: {result.status}",
                  file=sys.stderr, flush=True)

    results = run_all(cases, args.jobs, args.timeout, args.model_timeout, progress)
    elapsed = time.perf_counter() - started
    print_summary(cases, results, elapsed)
    output = args.output or (DOC if full else None)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render(cases, results, elapsed, args.jobs))
        print(f"wrote {output}")
    if args.write_expected:
        EXPECTED.write_text("".join(f"{key}\n" for key in expected_pass(results)))
        print(f"wrote {EXPECTED} ({len(expected_pass(results))} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
