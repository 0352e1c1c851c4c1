"""What every `wasinfer` sub-command shares: where it prints, its exit codes, and the home directory.

A module of its own so that each command module imports it and `main` imports the command modules,
with no import running back up to `main`.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

# Exit codes: 0 ok, 1 a failed check, 2 bad input or an unsupported model (nothing written).
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
console = Console()
errors = Console(stderr=True)


def wasinfer_home() -> Path:
    return Path(os.environ.get("WASINFER_HOME", Path.home() / ".wasinfer"))
