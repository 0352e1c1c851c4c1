"""Classical ML: forests, linear models and SVMs, wasinfer against ONNX Runtime and the library's own predict.

Fits each model on a real tabular data set that scikit-learn ships (no download): breast_cancer (569
samples, 30 features, two classes) for the classifiers, wine (178 samples, 13 features, three classes)
for the multinomial logistic regression, diabetes (442 samples, 10 features, a real target) for the
regressors; converts it as users do (skl2onnx for scikit-learn,
onnxmltools for XGBoost and LightGBM; probabilities as a tensor, zipmap off) and times, side by
side on one thread, taking turns call by call:
- wasinfer: the module (`convert_onnx(..., max_batch=batch)`, run by `WasmModel` without
  interrupt checks: the kernel's own speed);
- ONNX Runtime (1 intra-op and 1 inter-op thread) on the same ONNX file;
- the library's own `predict_proba` (n_jobs / nthread 1), what the model would run as without ONNX
  (`predict` for a regressor, `decision_function` for LinearSVC, which has no probabilities).
Batches of 1, 64 and 1000 rows (drawn with replacement from the test split). Prints p50 latencies,
the ratios wasinfer / ONNX Runtime and wasinfer / library, and the largest difference between
wasinfer's probabilities (scores, predictions) and ONNX Runtime's. XGBoost and LightGBM rows are left out, saying so,
when the package (or onnxmltools) is not installed.

    python benchmarks/ml_bench.py            # every model; writes docs/performance.md's section
    python benchmarks/ml_bench.py --quick    # fewer trees' worth of time (no doc unless --doc)
    python benchmarks/ml_bench.py --models random_forest,svc --batches 1
    python benchmarks/ml_bench.py --family linear --quick   # the linear models and SVMs only
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, render_saved
from symbolic_bench import geomean, p50_turns
from wasinfer.artifact.convert import convert_onnx
from wasinfer.runtime.wasm import WasmModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ml_bench.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- ml_bench:begin -->", "<!-- ml_bench:end -->"


@dataclass(frozen=True)
class Case:
    name: str
    library: str  # the package that must be importable
    shape: str  # what the table says about the model's size
    make: Callable[[], Any]
    family: str = "forest"  # forest, or linear (linear models and SVMs): each has its geomean line
    data: str = "breast_cancer"  # the scikit-learn data set it is fitted on
    method: str = "predict_proba"  # the library's own call it is timed against


def _sklearn_forest(kind: str) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    if kind == "random_forest":
        return RandomForestClassifier(n_estimators=200, max_depth=10, random_state=0, n_jobs=1)
    return GradientBoostingClassifier(n_estimators=200, max_depth=6, random_state=0)


def _xgboost() -> Any:
    import xgboost

    return xgboost.XGBClassifier(n_estimators=300, max_depth=8, n_jobs=1, random_state=0)


def _lightgbm() -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier(n_estimators=300, max_depth=8, num_leaves=63, n_jobs=1, random_state=0,
                                   verbose=-1)


def _svc(kernel: str = "rbf") -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(kernel=kernel, probability=True, random_state=0))


def _linear(kind: str) -> Any:
    """A linear model or SVR after StandardScaler (as fitted in practice: the solvers want scaled features); but
    LinearSVC, alone."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR, LinearSVC

    models = {"logistic": lambda: LogisticRegression(max_iter=1000), "linear_regression": LinearRegression,
              "ridge": lambda: Ridge(alpha=1.0), "svr": lambda: SVR(C=100.0)}
    if kind == "linear_svc":  # skl2onnx cannot convert LinearSVC inside a pipeline (it asks it for zipmap)
        return LinearSVC(random_state=0, max_iter=20000)
    return make_pipeline(StandardScaler(), models[kind]())


CASES = [
    Case("random_forest", "sklearn", "200 trees, depth 10", partial(_sklearn_forest, "random_forest")),
    Case("gradient_boosting", "sklearn", "200 trees, depth 6", partial(_sklearn_forest, "gradient_boosting")),
    Case("xgboost", "xgboost", "300 trees, depth 8", _xgboost),
    Case("lightgbm", "lightgbm", "300 trees, depth 8, 63 leaves", _lightgbm),
    Case("svc", "sklearn", "RBF, probabilities, after StandardScaler", _svc, "linear"),
    Case("logistic_binary", "sklearn", "LogisticRegression, 2 classes, after StandardScaler",
         partial(_linear, "logistic"), "linear"),
    Case("logistic_multinomial", "sklearn", "LogisticRegression, 3 classes (wine), after StandardScaler",
         partial(_linear, "logistic"), "linear", "wine"),
    Case("linear_regression", "sklearn", "LinearRegression (diabetes), after StandardScaler",
         partial(_linear, "linear_regression"), "linear", "diabetes", "predict"),
    Case("ridge", "sklearn", "Ridge (diabetes), after StandardScaler", partial(_linear, "ridge"), "linear",
         "diabetes", "predict"),
    Case("linear_svc", "sklearn", "LinearSVC, scores (no scaler)", partial(_linear, "linear_svc"),
         "linear", method="decision_function"),
    Case("svc_linear", "sklearn", "SVC linear kernel, probabilities, after StandardScaler",
         partial(_svc, "linear"), "linear"),
    Case("svr", "sklearn", "SVR RBF (diabetes), after StandardScaler", partial(_linear, "svr"), "linear",
         "diabetes", "predict"),
]
FAMILIES = {"forest": "Forests", "linear": "Linear models and SVMs"}


def convert(case: Case, model: Any, features: int) -> onnx.ModelProto:
    """The model as its converter exports it, probabilities as a tensor (zipmap off)."""
    if case.library in ("xgboost", "lightgbm"):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        types = [("input", FloatTensorType([None, features]))]
        if case.library == "xgboost":
            return onnxmltools.convert_xgboost(model, initial_types=types, target_opset=15)
        return onnxmltools.convert_lightgbm(model, initial_types=types, target_opset=15, zipmap=False)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType as SklFloatTensorType

    # zipmap is an option of the models with probabilities (not of a regressor, nor of LinearSVC)
    options = {id(model): {"zipmap": False}} if case.method == "predict_proba" else None
    return convert_sklearn(model, initial_types=[("input", SklFloatTensorType([None, features]))],
                           options=options, target_opset={"": 15, "ai.onnx.ml": 3})


def missing(case: Case) -> str | None:
    """Why the case cannot run here, or None."""
    needed = [case.library] + (["onnxmltools"] if case.library in ("xgboost", "lightgbm") else [])
    absent = [name for name in needed if importlib.util.find_spec(name) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def run_case(case: Case, batches: list[int], seconds: float, quick: bool) -> dict[str, Any]:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    x, y = getattr(datasets, f"load_{case.data}")(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0)
    model = case.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SVC(probability=True) is deprecated from scikit-learn 1.9
        model.fit(x_train, y_train)
        onx = convert(case, model, x_train.shape[1])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxmltools declares LightGBM's label as [1]; ORT warns on every call
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        feeds = {"input": x_test[rng.integers(0, len(x_test), batch)]}
        started = time.perf_counter()
        compiled = convert_onnx(onx, max_batch=batch)
        compile_s = time.perf_counter() - started
        module = WasmModel(compiled.wasm)
        got, want = module.run(feeds), session.run(None, feeds)
        probabilities = onx.graph.output[-1].name  # a regressor's one output: its predictions
        diff = float(np.max(np.abs(got[probabilities] - want[-1])))
        labels_equal = len(want) == 1 or bool(np.array_equal(got[onx.graph.output[0].name], want[0]))
        runs = [partial(module.run, feeds), partial(session.run, None, feeds),
                partial(getattr(model, case.method), feeds["input"])]
        wasm_ms, ort_ms, library_ms = p50_turns(runs, 5 if quick else 20, 2000, seconds)
        rows.append({"batch": batch, "wasm_ms": wasm_ms, "ort_ms": ort_ms, "library_ms": library_ms,
                     "max_abs_diff": diff, "labels_equal": labels_equal, "compile_s": compile_s,
                     "wasm_bytes": len(compiled.wasm)})
        print(f"  {case.name} batch {batch}: wasinfer {fmt_ms(wasm_ms)}, ONNX Runtime {fmt_ms(ort_ms)}, "
              f"library {fmt_ms(library_ms)}; wasinfer / ORT {wasm_ms / ort_ms:.2f}x, max |diff| {diff:.1e}",
              flush=True)
    return {"model": case.name, "library": case.library, "shape": case.shape, "family": case.family,
            "ops": sorted({n.op_type for n in onx.graph.node}), "rows": rows}


def _family(case: dict[str, Any]) -> str:
    """The case's family; runs saved before families were recorded had the SVM as the one non-forest."""
    return str(case.get("family") or ("linear" if case["model"] == "svc" else "forest"))


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["## Classical ML: forests, linear models and SVMs", "",
             f"Written by `python benchmarks/ml_bench.py` on {report['date']}; do not edit between the markers. "
             f"{m['nproc']} cores ({m['cpu']}), load {m['loadavg_1min']}, one thread each. Models fitted on "
             "scikit-learn's breast_cancer set (30 features, 2 classes; wine, 13 features and 3 classes, and "
             "diabetes, 10 features and a real target, where the size says so), converted with zipmap off; "
             "wasinfer (no interrupt checks, a module per batch size), ONNX Runtime (1 thread) and the "
             "library's `predict_proba` (`predict` for a regressor, `decision_function` for LinearSVC; 1 "
             "thread) take turns call by call (p50). max |diff| is wasinfer's largest difference from ONNX "
             "Runtime's probabilities (scores, predictions); labels were equal in every row unless marked.", ""]
    for family, title in FAMILIES.items():
        for batch in sorted({r["batch"] for case in report["cases"] for r in case["rows"]}):
            ratios = [r["wasm_ms"] / r["ort_ms"] for case in report["cases"] for r in case["rows"]
                      if r["batch"] == batch and _family(case) == family]
            if ratios:
                lines.append(f"**{title} at batch {batch}: wasinfer / ONNX Runtime geomean "
                             f"{geomean(ratios):.2f}x.**")
    lines.append("")
    header = ["model", "size", "batch", "wasinfer", "ONNX Runtime", "library", "wasinfer / ORT",
              "wasinfer / library", "max |diff|"]
    table = []
    for case in report["cases"]:
        for r in case["rows"]:
            table.append([case["model"] + ("" if r["labels_equal"] else " (labels differ)"), case["shape"],
                          str(r["batch"]), fmt_ms(r["wasm_ms"]), fmt_ms(r["ort_ms"]), fmt_ms(r["library_ms"]),
                          f"{r['wasm_ms'] / r['ort_ms']:.2f}x", f"{r['wasm_ms'] / r['library_ms']:.2f}x",
                          f"{r['max_abs_diff']:.1e}"])
    lines += md_table(header, table)
    if report.get("skipped"):
        lines += ["", "Not run: " + "; ".join(f"{name} ({why})" for name, why in report["skipped"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated case names (default: all): "
                        + ", ".join(c.name for c in CASES))
    parser.add_argument("--family", choices=sorted(FAMILIES), default="",
                        help="only the cases of one family (forest; linear: the linear models and SVMs)")
    parser.add_argument("--batches", default="1,64,1000")
    parser.add_argument("--quick", action="store_true", help="fewer calls per cell")
    parser.add_argument("--seconds", type=float, default=None, help="time budget per cell (default 4, quick 1)")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.render:
        render_saved(args.out or RESULTS, render_section, BEGIN, END, bool(args.doc), DOC)
        return 0
    chosen = [c for c in CASES if (not args.models or c.name in args.models.split(","))
              and (not args.family or c.family == args.family)]
    batches = [int(b) for b in args.batches.split(",") if b]
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 4.0)
    skipped = {c.name: why for c in chosen if (why := missing(c))}
    for name, why in skipped.items():
        print(f"  {name}: not run ({why})", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "cases": [run_case(c, batches, seconds, args.quick) for c in chosen if c.name not in skipped],
              "skipped": skipped}
    full = not args.quick and not args.models and not args.family and args.batches == parser.get_default("batches")
    print(render_section(report))
    print(publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
