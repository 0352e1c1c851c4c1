"""One way for the scripts that generate a page of docs/ from the code: write it, or (`--check`, what
the tests run) say whether the file on disk is what the code says, without touching it."""

from __future__ import annotations

import sys
from pathlib import Path


def publish(doc: Path, text: str, check: bool, command: str) -> int:
    """Write `text` to `doc`, or with `check` compare them; 1 when a check finds `doc` stale."""
    if check:
        if (doc.read_text() if doc.exists() else "") != text:
            print(f"{doc} is stale: run {command}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(text)
    print(f"wrote {doc}")
    return 0
