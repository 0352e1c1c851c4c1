"""Transcendental functions on f32x4 lanes, written as Wasm helper functions.

WebAssembly has no exp or log instruction. These follow Cephes' expf/logf: range
reduction by ln 2, then a degree-6 polynomial; relative error ~1e-7 over the f32 range.
Scalar code uses the same functions on a splatted vector, so there is one implementation.
erf follows the two-interval scheme of Sun's s_erff.c (as in musl and FreeBSD): a polynomial
in x² near 0, and exp(-x²) times a correction beyond; the coefficients are our own
least-squares fits (Chebyshev nodes, float64) checked in float32 to |error| < 1e-7.

Sigmoid and tanh are not built on exp: each is one rational function of x (odd numerator over an
even denominator in x², the minimax fits Eigen and ONNX Runtime's MLAS use), so a vector costs
about 20 multiplies and adds and one division, inline, where exp's range reduction, polynomial,
2^n and the division after it took three times as many instructions behind a call (8x ORT on a
large Sigmoid). Absolute error ≤ 2.5e-7 (sigmoid) and ≤ 4e-7 (tanh); the outputs are clamped to
[0, 1] and [-1, 1], and ONNX Runtime computes the same functions, so parity is closer than with exp.
"""

from __future__ import annotations

from wasinfer.backends.wasm.writer import V128, Func, Module

LN2_HI, LN2_LO, LOG2E = 0.693359375, -2.12194440e-4, 1.44269504088896341
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
            -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
SQRT_HALF = 0.707106781186547524
ROUND_MAGIC = 12582912.0  # 1.5 * 2^23: adding it rounds |v| < 2^22 to an integer, kept in the low mantissa bits
# erf(x) = x + x * P(x²) for |x| < 1;  erf(x) = 1 - exp(-x²) * Q(1/|x|) for 1 <= |x| <= 4
ERF_SMALL = (7.933493907330558e-05, -0.0008034846396185458, 0.005191218573600054, -0.02685539983212948,
             0.11283625662326813, -0.3761262893676758, 0.12837916612625122)
ERF_LARGE = (-0.018135668709874153, 0.12200977653265, -0.35671499371528625, 0.5782349109649658,
             -0.5072547793388367, 0.0514148585498333, 0.5576755404472351, 0.00035397446481510997)

# sigmoid(x) ~ 1/2 + x P(x²) / Q(x²) on x clamped to [-18, 18] (highest power first)
SIGMOID_LIMIT = 18.0
SIGMOID_P = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
             2.48287947061529e-01)
SIGMOID_Q = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
             1.16817656904453e-01, 9.93151921023180e-01)
# tanh(x) ~ x P(x²) / Q(x²) on x clamped to ±7.9053111: the smallest x whose value rounds to 1 in float32
TANH_LIMIT = 7.90531110763549805
TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
          1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _horner(f: Func, x: int, coeffs: tuple[float, ...], acc: int) -> None:
    f.f32x4_const(coeffs[0]).set(acc)
    for c in coeffs[1:]:
        f.get(acc).get(x).op("f32x4.mul").f32x4_const(c).op("f32x4.add").set(acc)


def odd_rational(f: Func, x: int, limit: float, p: tuple[float, ...], q: tuple[float, ...]) -> None:
    """Push x P(x²) / Q(x²) with x clamped to [-limit, limit] (in place: x's local is overwritten).

    pmin/pmax clamp in one instruction each (f32x4.min/max cost several on x86 for their NaN and
    signed-zero rules) and keep NaN: pmax(NaN, c) is NaN. Both polynomials are evaluated side by
    side, so their multiplies and adds overlap."""
    x2, num, den = f.local(V128), f.local(V128), f.local(V128)
    f.get(x).f32x4_const(-limit).op("f32x4.pmax").f32x4_const(limit).op("f32x4.pmin").set(x)
    f.get(x).get(x).op("f32x4.mul").set(x2)
    f.f32x4_const(p[0]).set(num)
    f.f32x4_const(q[0]).set(den)
    for step in range(1, max(len(p), len(q))):
        for coeffs, acc in ((p, num), (q, den)):
            if step < len(coeffs):
                f.get(acc).get(x2).op("f32x4.mul").f32x4_const(coeffs[step]).op("f32x4.add").set(acc)
    f.get(num).get(x).op("f32x4.mul").get(den).op("f32x4.div")


def sigmoid_v128(f: Func, x: int) -> None:
    """Push sigmoid(x), in [0, 1]; x's local is overwritten."""
    odd_rational(f, x, SIGMOID_LIMIT, SIGMOID_P, SIGMOID_Q)
    f.f32x4_const(0.5).op("f32x4.add").f32x4_const(0.0).op("f32x4.pmax").f32x4_const(1.0).op("f32x4.pmin")


def tanh_v128(f: Func, x: int) -> None:
    """Push tanh(x), in [-1, 1]; x's local is overwritten."""
    odd_rational(f, x, TANH_LIMIT, TANH_P, TANH_Q)


def exp_v128(f: Func, x: int) -> None:
    """Push exp(x) (x's local is overwritten); NaN stays NaN, x is clamped to [-87.3, 88.3] (no
    infinities, no subnormals).

    The clamp is pmax/pmin (one instruction each on x86; f32x4.max/min take several for their NaN
    and signed-zero rules, and NaN passes through pmax/pmin anyway). n = round(x log2 e) comes from
    adding 1.5 * 2^23, which rounds to an integer (ties to even, as f32x4.nearest) and leaves n in
    the low mantissa bits: subtracting it again gives n as a float, shifting its bits left by 23
    gives n in the exponent field, which saves the float-to-int conversion (i32x4.trunc_sat is a
    long sequence on x86). Bit for bit what nearest + trunc_sat gave."""
    n, r, p, t = f.local(V128), f.local(V128), f.local(V128), f.local(V128)
    f.get(x).f32x4_const(-87.3).op("f32x4.pmax").f32x4_const(88.3).op("f32x4.pmin").set(x)
    f.get(x).f32x4_const(LOG2E).op("f32x4.mul").f32x4_const(ROUND_MAGIC).op("f32x4.add").set(t)
    f.get(t).f32x4_const(ROUND_MAGIC).op("f32x4.sub").set(n)
    f.get(x).get(n).f32x4_const(LN2_HI).op("f32x4.mul").op("f32x4.sub")
    f.get(n).f32x4_const(LN2_LO).op("f32x4.mul").op("f32x4.sub").set(r)
    _horner(f, r, EXP_POLY, p)
    # p*r*r + r + 1
    f.get(p).get(r).op("f32x4.mul").get(r).op("f32x4.mul").get(r).op("f32x4.add").f32x4_const(1.0).op("f32x4.add")
    # * 2^n: n sits in t's low bits, so (t << 23) + (127 << 23) is 2^n's bit pattern
    f.get(t).i32(23).op("i32x4.shl").i32(127 << 23).op("i32x4.splat").op("i32x4.add")
    f.op("f32x4.mul")


def build_exp(f: Func) -> None:
    """The exp4 helper: `exp_v128` on the parameter, for kernels whose loops are large already."""
    exp_v128(f, 0)


def build_log(f: Func) -> None:
    """Natural log; log(0) = -inf, log(x<0) = NaN as in IEEE."""
    x, e, m, z, p, orig = 0, f.local(V128), f.local(V128), f.local(V128), f.local(V128), f.local(V128)
    f.get(x).set(orig)
    # exponent and mantissa in [0.5, 1)
    f.get(x).i32(23).op("i32x4.shr_u").i32(0xFF).op("i32x4.splat").op("v128.and")
    f.i32(126).op("i32x4.splat").op("i32x4.sub").op("f32x4.convert_i32x4_s").set(e)
    f.get(x).i32(0x807FFFFF).op("i32x4.splat").op("v128.and").i32(0x3F000000).op("i32x4.splat").op("v128.or").set(m)
    # if m < sqrt(1/2): e -= 1, m = 2m - 1 else m = m - 1
    mask = f.local(V128)
    f.get(m).f32x4_const(SQRT_HALF).op("f32x4.lt").set(mask)
    f.get(e).f32x4_const(1.0).get(mask).op("v128.and").op("f32x4.sub").set(e)
    f.get(m).get(m).get(mask).op("v128.and").op("f32x4.add").f32x4_const(1.0).op("f32x4.sub").set(m)
    f.get(m).get(m).op("f32x4.mul").set(z)
    _horner(f, m, LOG_POLY, p)
    # y = m*z*p - 0.5*z + m + e*ln2
    f.get(p).get(m).op("f32x4.mul").get(z).op("f32x4.mul")
    f.get(e).f32x4_const(LN2_LO).op("f32x4.mul").op("f32x4.add")
    f.get(z).f32x4_const(0.5).op("f32x4.mul").op("f32x4.sub")
    f.get(m).op("f32x4.add").get(e).f32x4_const(LN2_HI).op("f32x4.mul").op("f32x4.add").set(p)
    # special cases: x == 0 → -inf, x < 0 or NaN → NaN, x == inf → inf
    f.f32x4_const(float("-inf")).get(p).get(orig).f32x4_const(0.0).op("f32x4.eq").op("v128.bitselect").set(p)
    f.f32x4_const(float("nan")).get(p).get(orig).f32x4_const(0.0).op("f32x4.ge").op("v128.not").op("v128.bitselect").set(p)
    f.get(orig).get(p).get(orig).f32x4_const(float("inf")).op("f32x4.eq").op("v128.bitselect")


def build_erf(f: Func, exp: int) -> None:
    """erf; |x| > 4 gives ±1 (erf(4) rounds to 1 in float32), NaN stays NaN."""
    x, a, p, small = 0, f.local(V128), f.local(V128), f.local(V128)
    f.get(x).op("f32x4.abs").f32x4_const(4.0).op("f32x4.min").set(a)
    z = f.local(V128)
    f.get(x).get(x).op("f32x4.mul").set(z)
    _horner(f, z, ERF_SMALL, p)
    f.get(x).get(x).get(p).op("f32x4.mul").op("f32x4.add").set(small)
    u = f.local(V128)
    f.f32x4_const(1.0).get(a).f32x4_const(1.0).op("f32x4.max").op("f32x4.div").set(u)
    _horner(f, u, ERF_LARGE, p)
    # copysign(1 - exp(-a²) * Q, x), chosen where |x| >= 1
    f.get(small)
    f.f32x4_const(1.0).get(a).get(a).op("f32x4.mul").op("f32x4.neg").call(exp).get(p).op("f32x4.mul")
    f.op("f32x4.sub").get(x).i32(0x80000000).op("i32x4.splat").op("v128.and").op("v128.or")
    f.get(a).f32x4_const(1.0).op("f32x4.lt").op("v128.bitselect")


def add_math_helpers(module: Module) -> dict[str, int]:
    helpers = {}
    for name, build in (("exp4", build_exp), ("log4", build_log)):
        index, func = module.reserve([V128], [V128], name=name)
        build(func)
        helpers[name] = index
    index, func = module.reserve([V128], [V128], name="erf4")
    build_erf(func, helpers["exp4"])
    helpers["erf4"] = index
    return helpers
