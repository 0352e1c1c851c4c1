"""Control flow. An `If` whose condition folds at compile time is replaced by its taken branch
(passes/control.py); one decided at run time is declined."""

from __future__ import annotations

from wasinfer.ops.definition import Role, define

define("If", role=Role.INLINED, summary="inlined when its condition folds to a constant")
