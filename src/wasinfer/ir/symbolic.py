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


Affine = tuple[dict[Expr, int], int]  # coefficient per atom (a symbol, or an expression that is not affine), constant


def affine(dim: Dim) -> Affine:
    """The dim as a sum of atoms times whole coefficients plus a constant: `(x + 3) * 2 // 2 - 1` is `x + 2`.

    Dims are kept in this canonical form wherever they are affine, so two ways of computing the same dim
    compare equal (a feature map upsampled by 2 meets the one it was downsampled from)."""
    if isinstance(dim, int):
        return {}, dim
    if dim.op == "add":
        coeffs: dict[Expr, int] = {}
        constant = 0
        for arg in dim.args:
            inner, c = affine(arg)  # type: ignore[arg-type]
            constant += c
            for atom, k in inner.items():
                coeffs[atom] = coeffs.get(atom, 0) + k
        return coeffs, constant
    if dim.op == "mul":
        factors = [a for a in dim.args if not isinstance(a, int)]
        if len(factors) == 1:
            scale = math.prod(a for a in dim.args if isinstance(a, int))
            inner, c = affine(factors[0])  # type: ignore[arg-type]
            return {atom: k * scale for atom, k in inner.items()}, c * scale
    return {dim: 1}, 0


def from_affine(coeffs: dict[Expr, int], constant: int) -> Dim:
    terms: list[Dim] = [atom if k == 1 else Expr("mul", (atom, k))
                        for atom, k in sorted(coeffs.items(), key=lambda item: str(item[0])) if k]
    if not terms:
        return constant
    if len(terms) == 1 and not constant:
        return terms[0]
    return Expr("add", (*terms, constant) if constant else tuple(terms))


def add(*terms: Dim) -> Dim:
    coeffs: dict[Expr, int] = {}
    constant = 0
    for term in terms:
        inner, c = affine(term)
        constant += c
        for atom, k in inner.items():
            coeffs[atom] = coeffs.get(atom, 0) + k
    return from_affine(coeffs, constant)


def mul(*factors: Dim) -> Dim:
    if any(isinstance(f, int) and f < 0 for f in factors):
        raise ValueError("a symbolic dim multiplied by a negative number is not nondecreasing")
    constant = math.prod(f for f in factors if isinstance(f, int))
    exprs = [f for f in factors if isinstance(f, Expr)]
    if not exprs or constant == 0:
        return constant
    if len(exprs) == 1:
        coeffs, c = affine(exprs[0])
        return from_affine({atom: k * constant for atom, k in coeffs.items()}, c * constant)
    product = Expr("mul", tuple(sorted(exprs, key=str)))
    return product if constant == 1 else from_affine({product: constant}, 0)


def floordiv(dim: Dim, divisor: int) -> Dim:
    if divisor <= 0:
        raise ValueError(f"a symbolic dim divided by {divisor}")
    if isinstance(dim, int):
        return dim // divisor
    if divisor == 1:
        return dim
    coeffs, constant = affine(dim)
    if all(k % divisor == 0 for k in coeffs.values()):  # (d * k + c) // d is k + c // d exactly
        return from_affine({atom: k // divisor for atom, k in coeffs.items()}, constant // divisor)
    return Expr("floordiv", (dim, divisor))


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


__all__ = ["Affine", "Dim", "Env", "Expr", "Extent", "add", "affine", "evaluate", "floordiv", "from_affine",
           "is_static", "largest", "maximum", "minimum", "mul", "show", "smallest", "symbol"]
