"""What each worker process of `wasinfer serve --workers N` costs in memory, with one model (the digits demo module).

For N = 1, 2, 4 (or --workers): start the server from this environment, send requests on new connections until
every worker has answered one (X-Wasinfer-Worker says which), let start-up garbage settle, then read RSS and PSS
(footprint_bench.memory_mib) of the supervisor and of every worker. RSS counts each process's shared pages (the
Python runtime, numpy, grpcio, the compiled module mapped from the cache) once per process; PSS divides them
among the processes mapping them, so the node's PSS is what the workers together take from the machine.
N = 1 is the single process without a supervisor.

    python benchmarks/workers_footprint.py                  # 1, 2, 4 workers; writes results/workers_footprint.json
    python benchmarks/workers_footprint.py --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_report import machine
from footprint_bench import memory_mib

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "workers_footprint.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def measure(workers: int, repository: Path, home: Path, body: bytes) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repository),
               "--http-port", str(port), "--grpc-port", str(free_port()), "--workers", str(workers)]
    process = subprocess.Popen(command, env={**os.environ, "WASINFER_HOME": str(home)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        answered: set[str] = set()
        deadline = time.monotonic() + 120
        while len(answered) < workers:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/digits/infer", data=body,
                                                 method="POST")
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                    answered.add(response.headers.get("X-Wasinfer-Worker", "single"))
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{workers} workers did not all answer within 120 s") from None
                time.sleep(0.2)
        time.sleep(1.0)  # let start-up garbage settle
        supervisor = memory_mib(process.pid)
        each = [memory_mib(pid) for pid in children(process.pid)] if workers > 1 else []
        total = {key: round(supervisor[key] + sum(w[key] for w in each), 1) for key in supervisor}
        return {"workers": workers, "supervisor": supervisor, "each_worker": each, "node": total}
    finally:
        process.terminate()
        process.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (default 1,2,4)")
    args = parser.parse_args(argv)
    import onnx

    from wasinfer.artifact import convert_onnx
    from wasinfer.registry.demo import build_demo_model

    report: dict[str, Any] = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="wasinfer-workers-footprint-") as tmp:
        work = Path(tmp)
        (work / "repository" / "digits" / "1").mkdir(parents=True)
        module = convert_onnx(onnx.load_from_string(build_demo_model().onnx))
        (work / "repository" / "digits" / "1" / "model.wasm").write_bytes(module.wasm)
        [x] = module.metadata.inputs
        body = json.dumps({"inputs": [{"name": x.name, "shape": x.shape, "datatype": "FP32",
                                       "data": [0.0] * math.prod(x.shape)}]}).encode()
        print(f"{'workers':>7} {'node RSS':>10} {'node PSS':>10} {'supervisor PSS':>15} {'PSS per worker':>15}")
        for workers in (int(n) for n in args.workers.split(",")):
            run = measure(workers, work / "repository", work / "home", body)
            report["runs"].append(run)
            per = [w["pss_mib"] for w in run["each_worker"]] or [run["supervisor"]["pss_mib"]]
            print(f"{workers:>7} {run['node']['rss_mib']:>8.0f} M {run['node']['pss_mib']:>8.0f} M "
                  f"{run['supervisor']['pss_mib'] if workers > 1 else 0:>13.0f} M {sum(per) / len(per):>13.0f} M",
                  flush=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
