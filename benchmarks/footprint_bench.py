"""What an install and a server cost: the size of each install (the base runtime, `[serve]`, `[all]`) and the
resident memory of `wasinfer serve` with one model, measured in fresh virtual environments.

Each install is `pip install REPO[EXTRA]` (not editable) into a new venv; its size is the venv's
site-packages without pip itself. The server runs from the `[serve]` venv (no compiler: the module is
compiled beforehand by this environment) on a repository holding the digits demo module, answers one
REST request, and then its memory is read from /proc: RSS (what the issue's target names) and PSS
(shared library pages divided among the processes that map them: what a second worker adds less).

Needs the package index (the venvs are built from it, or from pip's cache) and a few minutes.

    python benchmarks/footprint_bench.py            # measure, write results and docs/performance.md
    python benchmarks/footprint_bench.py --render --doc
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_report import add_output_arguments, machine, md_table, publish, render_saved

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "footprint_bench.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- footprint_bench:begin -->", "<!-- footprint_bench:end -->"
INSTALLS = {"base": "", "serve": "[serve]", "all": "[all]"}


def site_packages_mb(venv: Path) -> float:
    [site] = venv.glob("lib/python*/site-packages")
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink()
                and not p.relative_to(site).parts[0].startswith("pip"))
    return total / 2**20


def install(extra: str, venv: Path) -> float:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"{ROOT}{extra}"], check=True)
    return site_packages_mb(venv)


def memory_mib(pid: int) -> dict[str, float]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS"))
    pss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
               if line.startswith("Pss:"))
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


def serve_memory(venv: Path, repository: Path, home: Path, grpc: bool, body: bytes) -> dict[str, float]:
    """Start the server, wait for one answer from the model, read its memory, stop it."""
    port = 18700 + os.getpid() % 200
    command = [str(venv / "bin" / "wasinfer"), "serve", "--model-repository", str(repository),
               "--http-port", str(port), "--grpc-port", str(port + 1) if grpc else "-1"]
    process = subprocess.Popen(command, env={**os.environ, "WASINFER_HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/digits/infer",
                                                 data=body, method="POST")
                urllib.request.urlopen(request, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the server did not answer within 60 s") from None
                time.sleep(0.2)
        time.sleep(1.0)  # let start-up garbage settle
        return memory_mib(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def measure() -> dict[str, Any]:
    import onnx

    from wasinfer.artifact import convert_onnx
    from wasinfer.registry.demo import build_demo_model

    report: dict[str, Any] = {"machine": machine(), "installs": {}, "server": {}}
    with tempfile.TemporaryDirectory(prefix="wasinfer-footprint-") as tmp:
        work = Path(tmp)
        for name, extra in INSTALLS.items():
            started = time.perf_counter()
            report["installs"][name] = round(install(extra, work / name), 1)
            print(f"{name:6s} {report['installs'][name]:7.1f} MiB  ({time.perf_counter() - started:.0f} s)", flush=True)
        repository = work / "repository" / "digits" / "1"
        repository.mkdir(parents=True)
        module = convert_onnx(onnx.load_from_string(build_demo_model().onnx))
        (repository / "model.wasm").write_bytes(module.wasm)
        [x] = module.metadata.inputs
        body = json.dumps({"inputs": [{"name": x.name, "shape": x.shape, "datatype": "FP32",
                                       "data": [0.0] * math.prod(x.shape)}]}).encode()
        for label, grpc in (("REST and gRPC", True), ("REST only (--grpc-port -1)", False)):
            report["server"][label] = serve_memory(work / "serve", repository.parent.parent, work / "home", grpc, body)
            print(label, report["server"][label], flush=True)
        for name in INSTALLS:
            shutil.rmtree(work / name, ignore_errors=True)
    return report


def section(report: dict[str, Any]) -> str:
    m = report["machine"]
    installs = report["installs"]
    rows = [[name, f"`pip install wasinfer{INSTALLS[name]}`", f"{size:.0f} MiB",
             f"{size / installs['all']:.2f}"] for name, size in installs.items()]
    server = [[label, f"{v['rss_mib']:.0f} MiB", f"{v['pss_mib']:.0f} MiB"] for label, v in report["server"].items()]
    return "\n".join([
        "## Install size and server memory",
        "",
        f"Generated by `python benchmarks/footprint_bench.py` ({m['nproc']} cores, Python {m['python']}); do not "
        "edit between the markers. Each install is a fresh venv (`pip install REPO[EXTRA]`), its site-packages "
        "without pip. `all` is every extra. Before the extras every install was everything: 611 MiB measured the same "
        "way on 2026-12-07 before they landed (the base install is a fifth of that); `all` has since gained model "
        "signing (model-signing and Sigstore's libraries), the Kubernetes client (`k8s://` desired state) and gRPC "
        "reflection, and lost grpcio-tools (the .protos ship compiled).",
        "",
        *md_table(["install", "command", "site-packages", "of all"], rows),
        "",
        "`wasinfer serve` from the `[serve]` venv with the digits demo module, after one answered request: "
        "REST and gRPC first, on an empty compiled-code cache (a new pod's start), then REST only, on the cache "
        "the first left. RSS counts every mapped page the process touched, shared libraries included (numpy's "
        "~16 MiB, grpcio's ~10 MiB: imported only when gRPC is served); PSS divides shared pages among the "
        "processes mapping them. Where the rest goes, and what was cut: \"Where a server's memory goes\" "
        "below.",
        "",
        *md_table(["server", "RSS", "PSS"], server),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.render:
        render_saved(args.out or RESULTS, section, BEGIN, END, bool(args.doc), DOC)
        return 0
    report = measure()
    print(section(report))
    print(publish(report, args.out, RESULTS, True, args.doc, section, BEGIN, END, DOC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
