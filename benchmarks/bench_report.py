"""What every benchmark script here reports the same way: the machine, markdown tables, and its
section of docs/performance.md (between its own markers, leaving the other sections alone).

The scripts run as `python benchmarks/<name>.py`, so this module is imported from beside them.
"""

from __future__ import annotations

import os
import platform
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
