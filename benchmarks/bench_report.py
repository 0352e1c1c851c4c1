"""What every benchmark script here reports the same way: the machine, markdown tables, and its
section of docs/performance.md (between its own markers, leaving the other sections alone).

The scripts run as `python benchmarks/<name>.py`, so this module is imported from beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()

    def cpu_field(name: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.split(":")[0].strip() == name), "")

    # Virtual machines often name only the vendor; family/model and the vector extensions tell more.
    vector = " ".join(f for f in ("fma", "avx2", "avx512f") if f in cpu_field("flags").split())
    cpu = (f"{cpu_field('model name') or platform.processor() or 'unknown'}, family {cpu_field('cpu family')} "
           f"model {cpu_field('model')}, {vector}")
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "memory_gib": round(int(memory) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_1min": round(os.getloadavg()[0], 2)}  # other work on the machine skews every column


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)]


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.1f} µs"
    return f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def results_path(chosen: Path | None, default: Path, full: bool) -> Path:
    """Where a run's JSON goes: a quick or partial run writes `*.partial.json` beside the full run's file (ignored
    by git), so it never replaces the figures that docs/performance.md was written from."""
    return chosen or (default if full else default.with_suffix(".partial.json"))


def write_doc(section: str, begin: str, end: str, path: Path) -> None:
    """Replace only the text between the markers, keeping whatever other sections the file has."""
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Performance\n\n{block}\n")
        return
    text = path.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def add_output_arguments(parser: argparse.ArgumentParser, results: Path, root: Path) -> None:
    """--out, --doc and --render, which every benchmark takes alike."""
    shown = results.relative_to(root) if results.is_relative_to(root) else results
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON results (default: {shown} for a full run; a quick or partial run writes beside "
                        "it as *.partial.json, so it never replaces the full run's figures)")
    parser.add_argument("--doc", action=argparse.BooleanOptionalAction, default=None,
                        help="update docs/performance.md (default: only on a full run)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: print and (with --doc) write the section from the --out JSON")


def publish(report: dict[str, Any], chosen: Path | None, default: Path, full: bool, doc: bool | None,
            section: Callable[[dict[str, Any]], str], begin: str, end: str, doc_path: Path) -> str:
    """Write a run's JSON (results_path decides where) and, for a full run or with --doc, its section of the doc;
    returns the line saying what was written."""
    out = results_path(chosen, default, full)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    if doc or (doc is None and full):
        write_doc(section(report), begin, end, doc_path)
        return f"wrote {out} and {doc_path}"
    return f"wrote {out}; docs/performance.md untouched (not a full run; --doc forces it)"


def render_saved(path: Path, section: Callable[[dict[str, Any]], str], begin: str, end: str, doc: bool,
                 doc_path: Path) -> dict[str, Any]:
    """--render: print the section of a saved run's JSON and, with --doc, write it into the doc; returns the run."""
    report: dict[str, Any] = json.loads(path.read_text())
    text = section(report)
    print(text)
    if doc:
        write_doc(text, begin, end, doc_path)
    return report
