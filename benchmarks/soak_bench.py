"""Soak: minutes of mixed good and hostile traffic against one `wasinfer serve`, watching for anything that grows.

One server in its own process on 127.0.0.1 (REST only), with a short deadline, small body and JSON
limits and a short header timeout, so that every hostile request is cheap to send and to refuse, and
a small memory budget (room for a few versions of `churn`), so old versions are evicted as new ones
load.
Its model repository holds `tests/hostile.py` modules: `echo` (well-behaved, y = x) for the good
traffic, `loop` (loops until the deadline stops it, for a negative input) and `trap` (traps on
every run), plus `pool` (unloaded and loaded again and again) and `churn` (a new version appears
every few seconds and is loaded: an update). Concurrently, for `--minutes`:

- good clients post `echo` requests back to back (their latency is the p99 reported);
- hostile clients cycle through bad JSON, an oversized body, JSON with more values than the limit,
  strings as FP32 data, an unknown model, a 300-character name, a 4,400-digit version, a request the
  deadline stops (504) and one that traps (500);
- a lifecycle client unloads and loads `pool` (requests to it in between get 503) and writes new
  versions of `churn`, loads them, and checks the next answer comes from the new version;
- a slowloris client opens connections that stop inside their headers, and counts those the server
  does not close within the header timeout (and 5 s);
- a sampler reads the server's resident memory (VmRSS), open files and sockets and threads from /proc and
  the loaded versions from the repository index, with the good requests' p99 and the errors of each interval.

Every answer is checked against what its kind should get; anything else (a 5xx where a 4xx was due,
a refused connection, a wrong version) is counted as unexpected. At the end a least-squares line
through the second half of the samples says whether RSS, descriptors, threads or the p99 grew.

    python benchmarks/soak_bench.py                 # 10 minutes (the full run; writes its section of the doc)
    python benchmarks/soak_bench.py --minutes 1     # a short run
    python benchmarks/soak_bench.py --quick         # 1 minute, fewer clients
    python benchmarks/soak_bench.py --render --doc  # redo the tables and the section from the JSON

Writes benchmarks/results/soak_bench.json (a short run: soak_bench.partial.json) and, on a full run or with
--doc, the "Soak" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

import wasinfer
from bench_report import add_output_arguments, fmt_ms, machine, md_table, publish, write_doc
from serve_bench import HOST, ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/hostile.py's modules, as compile_bench takes tests/model_zoo.py's
    sys.path.insert(0, str(ROOT))
from tests.hostile import echo_module, looping_module, trapping_module  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "soak_bench.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- soak_bench:begin -->", "<!-- soak_bench:end -->"
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass(frozen=True)
class Settings:
    minutes: float = 10.0
    good_clients: int = 6
    hostile_clients: int = 2
    slowloris: int = 20  # connections held inside their headers at a time
    sample_s: float = 5.0
    deadline_ms: int = 200  # the loop model's requests cost this much each
    header_timeout_s: float = 2.0
    max_body_bytes: int = 1 << 20
    max_json_values: int = 10_000
    lifecycle_every_s: float = 2.0  # an unload/load of `pool` or a new version of `churn`, alternately
    memory_budget_mb: int = 1  # room for the four small models and about three versions of `churn`: older ones go


CHURN_PAGES = 4  # 256 KiB of memory per `churn` version, so that a 1 MB budget holds only a few
FULL = Settings()
QUICK = Settings(minutes=1.0, good_clients=3, hostile_clients=1, slowloris=10, sample_s=3.0)

# What each kind of request must be answered; anything else is unexpected.
EXPECTED: dict[str, set[int]] = {
    "good": {200}, "bad_json": {400}, "oversized": {413}, "too_many_values": {413}, "string_data": {400},
    # 503: the model's fault breaker is open (most of its recent runs faulted: docs/serving.md)
    "unknown_model": {404}, "long_name": {404}, "long_version": {404}, "deadline": {504, 503}, "trap": {500, 503},
    "pool": {200, 503}, "unload": {200}, "load": {200}, "update": {200},
}


def _tensor(values: list[float] | list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": values}]}


GOOD = json.dumps(_tensor([1.0, 2.0, 3.0, 4.0])).encode()


def hostile_requests(settings: Settings) -> list[tuple[str, str, bytes]]:
    """(kind, path, body) of every hostile request, sent in turn."""
    many = settings.max_json_values + 10
    return [
        ("bad_json", "/v2/models/echo/infer", b'{"inputs": ['),
        ("oversized", "/v2/models/echo/infer", b" " * (settings.max_body_bytes + 1)),
        ("too_many_values", "/v2/models/echo/infer",
         json.dumps({"inputs": [{"name": "x", "shape": [1, many], "datatype": "FP32", "data": [1] * many}]}).encode()),
        ("string_data", "/v2/models/echo/infer", json.dumps(_tensor(["nan", "1", "2", "3"])).encode()),
        ("unknown_model", "/v2/models/nosuch/infer", GOOD),
        ("long_name", f"/v2/models/{'a' * 300}/infer", GOOD),
        ("long_version", f"/v2/models/echo/versions/{'1' * 4400}/infer", GOOD),
        ("deadline", "/v2/models/loop/infer", json.dumps(_tensor([-1.0, 0.0, 0.0, 0.0])).encode()),
        ("trap", "/v2/models/trap/infer", GOOD),
    ]


def write_version(repo: Path, name: str, version: int, wasm: bytes) -> None:
    path = repo / name / str(version) / "model.wasm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wasm)


def build_repository(repo: Path) -> None:
    write_version(repo, "echo", 1, echo_module())
    write_version(repo, "loop", 1, looping_module())
    write_version(repo, "trap", 1, trapping_module())
    write_version(repo, "pool", 1, echo_module())
    write_version(repo, "churn", 1, echo_module(CHURN_PAGES))


# --- the load -----------------------------------------------------------------------------------------------------


class Soak:
    """The clients' shared tallies for one run."""

    def __init__(self, settings: Settings, port: int, repo: Path):
        self.settings, self.port, self.repo = settings, port, repo
        self.base = f"http://{HOST}:{port}"
        self.ends = time.monotonic() + settings.minutes * 60
        self.counts: Counter[str] = Counter()  # "kind status"
        self.unexpected: Counter[str] = Counter()
        self.window: Counter[str] = Counter()  # unexpected answers since the last sample
        self.latencies: list[float] = []  # good requests since the last sample, seconds
        self.slowloris_kept_open = self.slowloris_closed = 0
        self.churn_version = 1

    def running(self) -> bool:
        return time.monotonic() < self.ends

    def record(self, kind: str, status: int | str) -> None:
        self.counts[f"{kind} {status}"] += 1
        if status not in EXPECTED[kind]:
            self.unexpected[f"{kind} {status}"] += 1
            self.window[f"{kind} {status}"] += 1

    async def post(self, client: httpx.AsyncClient, kind: str, path: str, body: bytes) -> httpx.Response | None:
        try:
            response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            self.record(kind, type(exc).__name__)
            return None
        self.record(kind, response.status_code)
        return response

    async def good(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            while self.running():
                started = time.perf_counter()
                response = await self.post(client, "good", "/v2/models/echo/infer", GOOD)
                if response is not None and response.status_code == 200:
                    self.latencies.append(time.perf_counter() - started)

    async def hostile(self, offset: int) -> None:
        requests = hostile_requests(self.settings)
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            turn = offset
            while self.running():
                kind, path, body = requests[turn % len(requests)]
                await self.post(client, kind, path, body)
                turn += 1

    async def lifecycle(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as client:
            turn = 0
            while self.running():
                await asyncio.sleep(self.settings.lifecycle_every_s)
                if turn % 2 == 0:
                    await self.post(client, "unload", "/v2/repository/models/pool/unload", b"")
                    await self.post(client, "pool", "/v2/models/pool/infer", GOOD)  # 503 while unloaded
                    await self.post(client, "load", "/v2/repository/models/pool/load", b"")
                    await self.post(client, "pool", "/v2/models/pool/infer", GOOD)
                else:
                    await self.update(client)
                turn += 1

    async def update(self, client: httpx.AsyncClient) -> None:
        """A new version of `churn` appears, is loaded, and answers; the one before the last is removed."""
        self.churn_version += 1
        version = self.churn_version
        write_version(self.repo, "churn", version, echo_module(CHURN_PAGES))
        await self.post(client, "load", "/v2/repository/models/churn/load", b"")
        response = await self.post(client, "update", "/v2/models/churn/infer", GOOD)
        if response is not None and response.status_code == 200 and response.json()["model_version"] != str(version):
            self.record("update", f"version {response.json()['model_version']} not {version}")
        if version > 2:
            shutil.rmtree(self.repo / "churn" / str(version - 2), ignore_errors=True)

    async def slowloris(self) -> None:
        """Rounds of connections that stop inside their headers; the server must close each within its header
        timeout (5 s of slack); one still open after that is counted and closed here."""
        partial = b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
        bound = self.settings.header_timeout_s + 5

        async def one() -> None:
            try:
                reader, writer = await asyncio.open_connection(HOST, self.port)
            except OSError as exc:
                self.record("good", type(exc).__name__)  # a refused connection would refuse good clients too
                return
            writer.write(partial)
            try:
                await asyncio.wait_for(reader.read(), bound)  # to EOF: the server's 408, then its close
                self.slowloris_closed += 1
            except TimeoutError:
                self.slowloris_kept_open += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        while self.running():
            await asyncio.gather(*(one() for _ in range(self.settings.slowloris)))

    async def sampler(self, server: ServerProcess, samples: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            while self.running():
                await asyncio.sleep(min(self.settings.sample_s, max(0.0, self.ends - time.monotonic())))
                latencies, self.latencies = self.latencies, []
                window, self.window = self.window, Counter()
                index = (await client.post("/v2/repository/index", json={"ready": True})).json()
                sample = {"t_s": round(time.monotonic() - started, 1), **process_figures(server),
                          "loaded_versions": len(index), "good": len(latencies),
                          "good_p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None,
                          "unexpected": sum(window.values())}
                samples.append(sample)
                console.print(f"[dim]{sample['t_s']:6.0f} s  RSS {sample['rss_mib']:.0f} MiB  files "
                              f"{sample['file_fds']}  sockets {sample['socket_fds']}  "
                              f"threads {sample['threads']}  loaded versions {len(index)}  good {sample['good']}  "
                              f"p99 {fmt_ms(sample['good_p99_ms'])}  unexpected {sample['unexpected']}[/dim]")


def process_figures(server: ServerProcess) -> dict[str, Any]:
    assert server.proc is not None
    pid = server.proc.pid
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed since the listing
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    sockets = sum(target.startswith("socket:") for target in targets)
    return {"rss_mib": rss / 1024, "file_fds": len(targets) - sockets, "socket_fds": sockets, "threads": threads}


# --- trends -------------------------------------------------------------------------------------------------------

# A figure "grew" when its least-squares line over the second half rises by more than this much across that half
# (absolute, or relative to its mean there): well above the wobble of a steady server.
# Sockets come and go with the slowloris rounds (up to `slowloris` at a time), hence their wider tolerance.
GROWTH_TOLERANCE = {"rss_mib": (16.0, 0.05), "file_fds": (4.0, 0.0), "socket_fds": (8.0, 0.0), "threads": (2.0, 0.0),
                    "loaded_versions": (2.0, 0.0), "good_p99_ms": (2.0, 0.5)}


def trend(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    half = [s for s in samples[len(samples) // 2:] if s.get(key) is not None]
    if len(half) < 3:
        return {"slope_per_min": None, "rise": None, "grew": None}
    t = np.array([s["t_s"] for s in half]) / 60
    y = np.array([s[key] for s in half], dtype=float)
    slope = float(np.polyfit(t, y, 1)[0])
    rise = slope * float(t[-1] - t[0])
    absolute, relative = GROWTH_TOLERANCE[key]
    return {"slope_per_min": slope, "rise": rise, "grew": bool(rise > max(absolute, relative * float(y.mean())))}


def finish(report: dict[str, Any]) -> None:
    report["trends"] = {key: trend(report["samples"], key) for key in GROWTH_TOLERANCE}
    report["grew"] = sorted(key for key, t in report["trends"].items() if t["grew"])
    report["clean"] = not report["grew"] and not report["unexpected"] and not report["slowloris_kept_open"]


# --- the run ------------------------------------------------------------------------------------------------------


def run(settings: Settings, workdir: Path) -> dict[str, Any]:
    repo = workdir / "repository"
    build_repository(repo)
    port = free_port()
    command = [sys.executable, "-m", "wasinfer.cli.main", "serve", "--model-repository", str(repo),
               "--host", HOST, "--http-port", str(port), "--grpc-port", "-1", "--pool-size", "2",
               "--deadline-ms", str(settings.deadline_ms), "--max-body-bytes", str(settings.max_body_bytes),
               "--max-json-values", str(settings.max_json_values), "--header-timeout-s",
               str(settings.header_timeout_s), "--memory-budget-mb", str(settings.memory_budget_mb),
               "--log-level", "error"]
    server = ServerProcess("wasinfer", command, port, "/v2/health/ready", workdir, workdir / "server.log",
                           env={"WASINFER_HOME": str(workdir / "home")})
    server.start(None)
    try:
        why = server.wait_ready(120)
        if why:
            raise SystemExit(f"the server did not start: {why}")
        soak = Soak(settings, port, repo)
        samples: list[dict[str, Any]] = [{"t_s": 0.0, **process_figures(server), "loaded_versions": 0, "good": 0,
                                          "good_p99_ms": None, "unexpected": 0}]

        async def everything() -> None:
            await asyncio.gather(*(soak.good() for _ in range(settings.good_clients)),
                                 *(soak.hostile(n * 3) for n in range(settings.hostile_clients)),
                                 soak.lifecycle(), soak.slowloris(), soak.sampler(server, samples))

        console.print(f"[dim]soaking for {settings.minutes:g} min…[/dim]")
        asyncio.run(everything())
        alive = server.proc is not None and server.proc.poll() is None
        return {"samples": samples, "counts": dict(sorted(soak.counts.items())),
                "unexpected": dict(sorted(soak.unexpected.items())), "slowloris_closed": soak.slowloris_closed,
                "slowloris_kept_open": soak.slowloris_kept_open, "churn_versions": soak.churn_version,
                "server_alive_at_end": alive, "server_log_tail": server.log_tail()}
    finally:
        server.stop()


# --- tables -------------------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:+.{digits}f}" if digits else f"{value:+.0f}"


def trend_rows(report: dict[str, Any]) -> list[list[str]]:
    samples, rows = report["samples"], []
    for key, label in (("rss_mib", "RSS (MiB)"), ("file_fds", "open files (descriptors)"),
                       ("socket_fds", "open sockets"), ("threads", "threads"),
                       ("loaded_versions", "loaded model versions"), ("good_p99_ms", "good requests' p99 (ms)")):
        values = [s[key] for s in samples if s.get(key) is not None]
        t = report["trends"][key]
        rows.append([label, f"{values[0]:.1f}" if values else "-", f"{values[-1]:.1f}" if values else "-",
                     f"{max(values):.1f}" if values else "-", _num(t["slope_per_min"], 2), _num(t["rise"], 2),
                     "-" if t["grew"] is None else "yes" if t["grew"] else "no"])
    return rows


TREND_HEADER = ["figure", "first", "last", "max", "slope / min (2nd half)", "rise (2nd half)", "grew"]


def count_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, count in report["counts"].items():
        kind, status = key.split(" ", 1)
        rows.append([kind, status, str(count), str(report["unexpected"].get(key, 0))])
    return rows


COUNT_HEADER = ["request", "answer", "count", "unexpected"]


def verdict(report: dict[str, Any]) -> str:
    if report["clean"]:
        return "clean: nothing grew, every answer was the one its request should get, every slowloris was closed"
    parts = [f"grew: {', '.join(report['grew'])}"] if report["grew"] else []
    if report["unexpected"]:
        parts.append(f"{sum(report['unexpected'].values())} unexpected answers")
    if report["slowloris_kept_open"]:
        parts.append(f"{report['slowloris_kept_open']} slowloris connections left open")
    return "NOT clean: " + "; ".join(parts)


def print_tables(report: dict[str, Any]) -> None:
    for title, header, rows in (("Trends", TREND_HEADER, trend_rows(report)),
                                ("Answers by request kind", COUNT_HEADER, count_rows(report))):
        table = Table(title=title, title_justify="left")
        for n, column in enumerate(header):
            table.add_column(column, justify="left" if n < 2 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"slowloris connections closed by the server: {report['slowloris_closed']}, left open: "
                  f"{report['slowloris_kept_open']}; versions of churn: {report['churn_versions']}")
    console.print(verdict(report), style="green" if report["clean"] else "red")


def render_section(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    good = sum(v for k, v in report["counts"].items() if k.startswith("good "))
    hostile = sum(v for k, v in report["counts"].items() if not k.startswith("good "))
    return "\n".join([
        "## Soak",
        "",
        f"Generated by `python benchmarks/soak_bench.py` on {report['date']} ({s['minutes']:g} min, wasinfer "
        f"{report['wasinfer']}); do not edit between the markers. One `wasinfer serve` on 127.0.0.1 took "
        f"{s['good_clients']} clients of good requests ({good} answered), {s['hostile_clients']} of hostile ones and "
        f"lifecycle calls ({hostile}: bad JSON, oversized bodies, too many JSON values, strings as numbers, unknown "
        f"and overlong names and versions, a model looping to its {s['deadline_ms']} ms deadline, a trapping model, "
        f"unloads, loads and {report['churn_versions'] - 1} new versions) and {s['slowloris']} slowloris connections "
        "at a time. Trends are least-squares lines through the second half of the samples.",
        "",
        f"**Machine:** {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python "
        f"{m['python']}; 1-minute load average {m['loadavg_1min']} before the run, {m['loadavg_1min_after']} after.",
        "",
        *md_table(TREND_HEADER, trend_rows(report)),
        "",
        *md_table(COUNT_HEADER, count_rows(report)),
        "",
        f"Slowloris connections closed by the server: {report['slowloris_closed']}; left open past the header "
        f"timeout: {report['slowloris_kept_open']}. **Verdict:** {verdict(report)}.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help=f"how long (default {FULL.minutes:g}; quick {QUICK.minutes:g})")
    parser.add_argument("--quick", action="store_true", help="1 minute, fewer clients: a smoke run")
    parser.add_argument("--good-clients", type=int, help=f"default {FULL.good_clients}")
    parser.add_argument("--hostile-clients", type=int, help=f"default {FULL.hostile_clients}")
    add_output_arguments(parser, RESULTS, ROOT)
    args = parser.parse_args(argv)
    if args.render:
        args.out = args.out or RESULTS
        saved = json.loads(args.out.read_text())
        finish(saved)
        print_tables(saved)
        if args.doc:
            write_doc(render_section(saved), BEGIN, END, DOC)
        return 0
    overrides = {"minutes": args.minutes, "good_clients": args.good_clients, "hostile_clients": args.hostile_clients}
    settings = replace(QUICK if args.quick else FULL, **{k: v for k, v in overrides.items() if v is not None})
    if settings.minutes <= 0 or math.isnan(settings.minutes):
        parser.error("--minutes must be positive")
    before = machine()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "settings": asdict(settings),
                              "wasinfer": wasinfer.__version__}
    with tempfile.TemporaryDirectory(prefix="soak-bench-") as tmp:
        report.update(run(settings, Path(tmp)))
    report["machine"] = {**before, "loadavg_1min_after": round(os.getloadavg()[0], 2)}
    finish(report)
    print_tables(report)
    full = not args.quick and all(v is None for v in overrides.values())
    console.print(publish(report, args.out, RESULTS, full, args.doc, render_section, BEGIN, END, DOC))
    return 0 if report["clean"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
