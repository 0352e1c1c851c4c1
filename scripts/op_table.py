"""Write docs/ops.md from the op definitions (src/wasinfer/ops/) and the wasm emitters.

    python scripts/op_table.py           # rewrite docs/ops.md
    python scripts/op_table.py --check   # exit 1 if docs/ops.md is not what the code says
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wasinfer.backends.wasm.compiler import emitter_files
from wasinfer.ops.table import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "ops.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when docs/ops.md is stale")
    args = parser.parse_args(argv)
    text = render(emitter_files())
    if args.check:
        current = DOC.read_text() if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run python scripts/op_table.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
