"""Write docs/ops.md from the op definitions (src/wasinfer/ops/) and the wasm emitters.

    python scripts/op_table.py           # rewrite docs/ops.md
    python scripts/op_table.py --check   # exit 1 if docs/ops.md is not what the code says
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generated import publish
from wasinfer.backends.wasm.compiler import emitter_files
from wasinfer.ops.table import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "ops.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when docs/ops.md is stale")
    args = parser.parse_args(argv)
    return publish(DOC, render(emitter_files()), args.check, "python scripts/op_table.py")


if __name__ == "__main__":
    sys.exit(main())
