"""Symbolic dims: a dim that each run decides, within a range the user gave at convert time.

`--input-shape x=1,3,48,32..1280` makes axis 3 of `x` a symbol with the range 32..1280. A value
computed from `x` then has dims that are expressions of that symbol: a convolution with stride 2 and
padding 1 over it gives `(x.3 + 2 - 3) // 2 + 1`. `Expr` is such an expression, a dim is an `int`
or an `Expr` (`Dim`), and a tensor's dims (`Extent`) are a tuple of them.

The expressions the compiler builds are all nondecreasing in every symbol (sums, products and
floor divisions by positive constants, min and max), so a dim's smallest and largest values are
its value at the symbols' smallest and largest: memory is planned for the largest (the tensor's
`TensorInfo.shape`), and a range whose smallest makes some dim empty is refused at convert time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Expr:
    """A nondecreasing integer expression of symbols: `op` is "sym" (args: the name), "add", "mul",
    "floordiv" (args: an expression and a positive int), "min" or "max"."""

    op: str
    args: tuple[Dim, ...] | tuple[str]

    def __str__(self) -> str:
        if self.op == "sym":
            return str(self.args[0])
        if self.op in ("min", "max"):
            return f"{self.op}({', '.join(map(str, self.args))})"
        sign = {"add": " + ", "mul": " * ", "floordiv": " // "}[self.op]
        return "(" + sign.join(str(a) for a in self.args) + ")"

    def symbols(self) -> set[str]:
        if self.op == "sym":
            return {str(self.args[0])}
        return set().union(*(a.symbols() for a in self.args if isinstance(a, Expr)))


Dim = int | Expr
Extent = tuple[Dim, ...]
Env = Mapping[str, int]


def symbol(name: str) -> Expr:
    return Expr("sym", (name,))


def is_static(dims: Iterable[Dim]) -> bool:
    return all(isinstance(d, int) for d in dims)


def evaluate(dim: Dim, env: Env) -> int:
    """The dim's value where each symbol has its value in `env`."""
    if isinstance(dim, int):
        return dim
    if dim.op == "sym":
        return env[str(dim.args[0])]
    values = [evaluate(a, env) for a in dim.args if not isinstance(a, str)]
    if dim.op == "add":
        return sum(values)
    if dim.op == "mul":
        return math.prod(values)
    if dim.op == "floordiv":
        return values[0] // values[1]
    return min(values) if dim.op == "min" else max(values)


def add(*terms: Dim) -> Dim:
    flat: list[Dim] = []
    for t in terms:  # (a + 1) + 2 is a + 3
        flat.extend(t.args if isinstance(t, Expr) and t.op == "add" else (t,))  # type: ignore[arg-type]
    constant = sum(t for t in flat if isinstance(t, int))
    exprs = [t for t in flat if isinstance(t, Expr)]
    if not exprs:
        return constant
    return Expr("add", (*exprs, constant)) if constant else (exprs[0] if len(exprs) == 1 else Expr("add", tuple(exprs)))


def mul(*factors: Dim) -> Dim:
    if any(isinstance(f, int) and f < 0 for f in factors):
        raise ValueError("a symbolic dim multiplied by a negative number is not nondecreasing")
    constant = math.prod(f for f in factors if isinstance(f, int))
    exprs = [f for f in factors if isinstance(f, Expr)]
    if not exprs or constant == 0:
        return constant
    if constant == 1 and len(exprs) == 1:
        return exprs[0]
    return Expr("mul", (*exprs, constant) if constant != 1 else tuple(exprs))


def floordiv(dim: Dim, divisor: int) -> Dim:
    if divisor <= 0:
        raise ValueError(f"a symbolic dim divided by {divisor}")
    if isinstance(dim, int):
        return dim // divisor
    return dim if divisor == 1 else Expr("floordiv", (dim, divisor))


def minimum(*dims: Dim) -> Dim:
    if is_static(dims):
        return min(dims)  # type: ignore[type-var]
    return Expr("min", tuple(dict.fromkeys(dims)))


def maximum(*dims: Dim) -> Dim:
    if is_static(dims):
        return max(dims)  # type: ignore[type-var]
    return Expr("max", tuple(dict.fromkeys(dims)))


def largest(dim: Dim, ranges: Mapping[str, tuple[int, int]]) -> int:
    return evaluate(dim, {name: high for name, (_, high) in ranges.items()})


def smallest(dim: Dim, ranges: Mapping[str, tuple[int, int]]) -> int:
    return evaluate(dim, {name: low for name, (low, _) in ranges.items()})


def show(extent: Extent) -> str:
    return "[" + ", ".join(str(d) for d in extent) + "]"


__all__ = ["Dim", "Env", "Expr", "Extent", "add", "evaluate", "floordiv", "is_static", "largest", "maximum",
           "minimum", "mul", "show", "smallest", "symbol"]
