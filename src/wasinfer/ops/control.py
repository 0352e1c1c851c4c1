"""Control flow, replaced by the nodes it runs while compiling (passes/control.py, passes/loops.py):
an `If` by its taken branch (both branches, guarded, when decided at run time); a `Loop` or
`Scan` by one copy of its body per iteration, as many as its trip count is at most."""

from __future__ import annotations

from wasinfer.ops.definition import Role, define

CHOOSE = ("wasinfer", "IfChoose")  # an output of a run-time If until its branches' types are known
REFUSE = ("wasinfer", "Refuse")  # (domain, op): a run that reaches it (its guards hold) stops with an error

define("If", role=Role.INLINED, summary="the taken branch; both, guarded by the condition, when decided at run time")
define("Loop", role=Role.INLINED, summary="unrolled when its trip count folds, or to its largest value when the "
                                          "data decides it; later iterations guarded by the run's count and "
                                          "condition")
define("Scan", role=Role.INLINED, summary="unrolled over the length of its scan axis (opset 9 and later); a symbolic "
                                          "one to its largest, later steps guarded by the run's length")
define("IfChoose", domain="wasinfer", role=Role.LOWERED,
       summary="an output of a run-time If, a Where on its condition once both branches' types are known")
define("Refuse", domain="wasinfer", role=Role.KERNEL,
       summary="a branch of a run-time If that cannot run at the compiled shapes: the run stops there and "
               "returns the branch's error")
define("Mask", domain="wasinfer", role=Role.KERNEL,
       summary="fills a tensor past a symbolic dim, in place, before a kernel that reads across that axis "
               "(0 where it adds, -inf where it takes a maximum: passes/symbolic.py)")
define("Dims", domain="wasinfer", role=Role.KERNEL,
       summary="dims that depend on symbolic dims, written as a tensor by each run, for a node that computes with "
               "them (passes/symbolic.py)")
