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

from collections.abc import Callable

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


def odd_rational(f: Func, x: int, limit: float, p: tuple[float, ...], q: tuple[float, ...],
                 fused: bool = False) -> None:
    """Push x P(x²) / Q(x²) with x clamped to [-limit, limit] (in place: x's local is overwritten).

    pmin/pmax clamp in one instruction each (f32x4.min/max cost several on x86 for their NaN and
    signed-zero rules) and keep NaN: pmax(NaN, c) is NaN. Both polynomials are evaluated side by
    side, so their multiplies and adds overlap. `fused` (the relaxed code variant) makes each Horner
    step one f32x4.relaxed_madd: an FMA where the host has one, 9 instructions fewer per vector for
    sigmoid, 10 for tanh, of about 30 (and one rounding less per step)."""
    x2, num, den = f.local(V128), f.local(V128), f.local(V128)
    f.get(x).f32x4_const(-limit).op("f32x4.pmax").f32x4_const(limit).op("f32x4.pmin").set(x)
    f.get(x).get(x).op("f32x4.mul").set(x2)
    f.f32x4_const(p[0]).set(num)
    f.f32x4_const(q[0]).set(den)
    for step in range(1, max(len(p), len(q))):
        for coeffs, acc in ((p, num), (q, den)):
            if step < len(coeffs):
                if fused:
                    f.get(acc).get(x2).f32x4_const(coeffs[step]).op("f32x4.relaxed_madd").set(acc)
                else:
                    f.get(acc).get(x2).op("f32x4.mul").f32x4_const(coeffs[step]).op("f32x4.add").set(acc)
    f.get(num).get(x).op("f32x4.mul").get(den).op("f32x4.div")


def sigmoid_v128(f: Func, x: int, fused: bool = False, at_most_one: bool = True) -> None:
    """Push sigmoid(x), in [0, 1]; x's local is overwritten (`fused`: see `odd_rational`).

    Without `at_most_one` the clamp at 1 is left out: the rational reaches 1 + 1 ulp for a few hundred x in
    [16.4, 18] (and never more), which Swish's product x * sigmoid(x) keeps within 2 ulp of x. One pmin and its
    constant less per vector: Swish on [1, 96, 52, 52] 213 -> 193 us here. The clamp at 0 stays (a large negative
    x gives 0, not a tiny value of the wrong sign)."""
    odd_rational(f, x, SIGMOID_LIMIT, SIGMOID_P, SIGMOID_Q, fused)
    f.f32x4_const(0.5).op("f32x4.add").f32x4_const(0.0).op("f32x4.pmax")
    if at_most_one:
        f.f32x4_const(1.0).op("f32x4.pmin")


def tanh_v128(f: Func, x: int, fused: bool = False) -> None:
    """Push tanh(x), in [-1, 1]; x's local is overwritten (`fused`: see `odd_rational`).

    Fused, the rational is 2 ulp short of ±1 at the clamp (0.99999976, where the plain code's roundings reach 1
    exactly), so tanh(20) would not be 1 and 1 + tanh(x) (a tanh-approximated GELU far left of 0) would not be 0:
    a clamped x gives ±1 itself."""
    odd_rational(f, x, TANH_LIMIT, TANH_P, TANH_Q, fused)
    if fused:
        rational = f.local(V128)
        f.set(rational)
        f.get(x).f32x4_const(-0.0).op("v128.and").f32x4_const(1.0).op("v128.or")  # ±1, x's sign
        f.get(rational)
        f.get(x).op("f32x4.abs").f32x4_const(TANH_LIMIT).op("f32x4.eq").op("v128.bitselect")


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


# Trigonometric and hyperbolic functions (the Sin ... Atanh kernels), after Cephes' sinf, cosf, atanf, asinf,
# sinhf, asinhf, acoshf and atanhf: a range reduction, then the same short polynomials, written for four lanes.
# sin and cos reduce x by pi/2 in Cody-Waite's three parts: PIO2_1 has 8 significant bits and PIO2_2 11, so
# j * PIO2_1 and j * PIO2_2 are exact for |j| < 2^13; |error| <= 8e-8 for |x| <= 1e4 and <= 1e-6 for |x| <= 1e5
# (measured against float64), after which it grows (float32 holds x itself only to 0.004 there).
TWO_OVER_PI = 0.636619772367581343
PIO2_1, PIO2_2, PIO2_3 = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8
SIN_POLY = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)  # sin r = r + r z P(z), z = r², |r| <= pi/4
COS_POLY = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)  # cos r = 1 - z/2 + z² Q(z)
ATAN_POLY = (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1)  # atan r = r + r z P(z)
TAN_3PI_8, TAN_PI_8 = 2.414213562373095, 0.4142135623730950
ASIN_POLY = (4.2163199048e-2, 2.4181311049e-2, 4.5470025998e-2, 7.4953002686e-2, 1.6666752422e-1)  # |w| <= 0.5
SINH_POLY = (2.03721912945e-4, 8.33028376239e-3, 1.66667160211e-1)  # |x| < 1
ASINH_POLY = (2.0122003309e-2, -4.2699340972e-2, 7.4847586088e-2, -1.6666288134e-1)  # |x| < 0.5
ACOSH_POLY = (1.7596881071e-3, -7.5272886713e-3, 2.6454905019e-2, -1.1784741703e-1, 1.4142135263)  # x - 1 < 0.5
ATANH_POLY = (1.81740078349e-1, 8.24370301058e-2, 1.46691431730e-1, 1.99782164500e-1, 3.33337300303e-1)
HALF_PI, LN2 = 1.5707963267948966, 0.6931471805599453
SIGN_BIT = 0x80000000


def _odd_poly(f: Func, x: int, coeffs: tuple[float, ...]) -> None:
    """Push x + x z P(z) with z = x² (the odd series every function below ends in)."""
    z, p = f.local(V128), f.local(V128)
    f.get(x).get(x).op("f32x4.mul").set(z)
    _horner(f, z, coeffs, p)
    f.get(p).get(z).op("f32x4.mul").get(x).op("f32x4.mul").get(x).op("f32x4.add")


def _sign_of(f: Func, x: int) -> None:
    """Push x's sign bit alone (to be or-ed or xor-ed into a result)."""
    f.get(x).i32(SIGN_BIT).op("i32x4.splat").op("v128.and")


def _quadrant(f: Func, x: int, r: int, j: int) -> None:
    """r = x - j pi/2 in [-pi/4, pi/4], j = round(x 2/pi) as an integer in each i32 lane (the ROUND_MAGIC
    addition leaves it in the low mantissa bits, as in exp_v128)."""
    n = f.local(V128)
    f.get(x).f32x4_const(TWO_OVER_PI).op("f32x4.mul").f32x4_const(ROUND_MAGIC).op("f32x4.add").set(j)
    f.get(j).f32x4_const(ROUND_MAGIC).op("f32x4.sub").set(n)
    f.get(x)
    for part in (PIO2_1, PIO2_2, PIO2_3):
        f.get(n).f32x4_const(part).op("f32x4.mul").op("f32x4.sub")
    f.set(r)


def _sin_cos_of_reduced(f: Func, r: int, s: int, c: int) -> None:
    """s = sin r and c = cos r for |r| <= pi/4."""
    z, p = f.local(V128), f.local(V128)
    f.get(r).get(r).op("f32x4.mul").set(z)
    _horner(f, z, SIN_POLY, p)
    f.get(p).get(z).op("f32x4.mul").get(r).op("f32x4.mul").get(r).op("f32x4.add").set(s)
    _horner(f, z, COS_POLY, p)
    f.get(p).get(z).op("f32x4.mul").get(z).op("f32x4.mul").get(z).f32x4_const(0.5).op("f32x4.mul").op("f32x4.sub")
    f.f32x4_const(1.0).op("f32x4.add").set(c)


def _lane_bit(f: Func, j: int, bit: int) -> None:
    """Push a mask of the lanes whose integer j has `bit` set."""
    f.get(j).i32(bit).op("i32x4.splat").op("v128.and").v128(bytes(16)).op("i32x4.ne")


def sin_cos_v128(f: Func, x: int, cos: bool) -> None:
    """Push sin(x) or cos(x) (cos x = sin(x + pi/2): one more quadrant). The result is clamped to [-1, 1],
    so that past the reduction's range (|x| > 1e5) it stays a sine's value; inf and NaN give NaN."""
    r, j, s, c = f.local(V128), f.local(V128), f.local(V128), f.local(V128)
    _quadrant(f, x, r, j)
    if cos:
        f.get(j).i32(1).op("i32x4.splat").op("i32x4.add").set(j)
    _sin_cos_of_reduced(f, r, s, c)
    f.get(c).get(s)
    _lane_bit(f, j, 1)
    f.op("v128.bitselect")  # odd quadrants take the cosine of r
    f.get(j).i32(30).op("i32x4.shl").i32(SIGN_BIT).op("i32x4.splat").op("v128.and").op("v128.xor")  # quadrants 2, 3
    f.f32x4_const(-1.0).op("f32x4.pmax").f32x4_const(1.0).op("f32x4.pmin")


def tan_v128(f: Func, x: int) -> None:
    """Push tan(x) = sin r / cos r, or -cos r / sin r in odd quadrants (the reduction of sin_cos_v128)."""
    r, j, s, c = f.local(V128), f.local(V128), f.local(V128), f.local(V128)
    _quadrant(f, x, r, j)
    _sin_cos_of_reduced(f, r, s, c)
    f.get(c).op("f32x4.neg").get(s).op("f32x4.div").get(s).get(c).op("f32x4.div")
    _lane_bit(f, j, 1)
    f.op("v128.bitselect")


def atan_v128(f: Func, x: int) -> None:
    """Push atan(x): |x| reduced to [0, tan(pi/8)] by atan a = pi/2 + atan(-1/a) (a > tan 3pi/8) or
    pi/4 + atan((a-1)/(a+1)) (a > tan pi/8); the sign is x's. atan(±inf) = ±pi/2."""
    a, big, mid, r, base = f.local(V128), f.local(V128), f.local(V128), f.local(V128), f.local(V128)
    f.get(x).op("f32x4.abs").set(a)
    f.get(a).f32x4_const(TAN_3PI_8).op("f32x4.gt").set(big)
    f.get(a).f32x4_const(TAN_PI_8).op("f32x4.gt").get(big).op("v128.andnot").set(mid)
    f.f32x4_const(-1.0).get(a).op("f32x4.div")
    f.get(a).f32x4_const(1.0).op("f32x4.sub").get(a).f32x4_const(1.0).op("f32x4.add").op("f32x4.div")
    f.get(a).get(mid).op("v128.bitselect").get(big).op("v128.bitselect").set(r)
    f.f32x4_const(HALF_PI).get(big).op("v128.and").f32x4_const(HALF_PI / 2).get(mid).op("v128.and")
    f.op("v128.or").set(base)
    _odd_poly(f, r, ATAN_POLY)
    f.get(base).op("f32x4.add")
    _sign_of(f, x)
    f.op("v128.xor")


def _asin_parts(f: Func, x: int, p: int, big: int) -> None:
    """p = asin(w) for w = |x| (|x| <= 1/2) or w = sqrt((1 - |x|) / 2) (|x| > 1/2, where big is set);
    |x| > 1 gives NaN (the square root of a negative)."""
    a, z, w = f.local(V128), f.local(V128), f.local(V128)
    f.get(x).op("f32x4.abs").set(a)
    f.get(a).f32x4_const(0.5).op("f32x4.gt").set(big)
    f.f32x4_const(1.0).get(a).op("f32x4.sub").f32x4_const(0.5).op("f32x4.mul").set(z)
    f.get(z).op("f32x4.sqrt").get(a).get(big).op("v128.bitselect").set(w)
    _odd_poly(f, w, ASIN_POLY)
    f.set(p)


def asin_v128(f: Func, x: int) -> None:
    """Push asin(x) = w + w z P(z) near 0, pi/2 - 2 asin(sqrt((1 - |x|) / 2)) past |x| = 1/2."""
    p, big = f.local(V128), f.local(V128)
    _asin_parts(f, x, p, big)
    f.f32x4_const(HALF_PI).get(p).get(p).op("f32x4.add").op("f32x4.sub").get(p).get(big).op("v128.bitselect")
    _sign_of(f, x)
    f.op("v128.or")


def acos_v128(f: Func, x: int) -> None:
    """Push acos(x): pi/2 - asin(x) near 0, 2 asin(sqrt((1 - x) / 2)) near 1 and pi minus that near -1 (no
    cancellation next to ±1, where acos is small or near pi)."""
    p, big, twice = f.local(V128), f.local(V128), f.local(V128)
    _asin_parts(f, x, p, big)
    f.get(p).get(p).op("f32x4.add").set(twice)
    f.f32x4_const(2 * HALF_PI).get(twice).op("f32x4.sub").get(twice)
    f.get(x).f32x4_const(0.0).op("f32x4.lt").op("v128.bitselect")
    f.f32x4_const(HALF_PI).get(p)
    _sign_of(f, x)
    f.op("v128.or").op("f32x4.sub")
    f.get(big).op("v128.bitselect")


def sinh_cosh_v128(f: Func, x: int, exp: int, cosh: bool) -> None:
    """Push sinh(x) or cosh(x) from h = exp(|x| / 2): h (h / 2) -/+ (1 / 2) / (h h), which overflows to inf
    where the function does (exp's clamp is at 88, the square's at 176). sinh takes x + x z P(z) below 1
    (no cancellation near 0) and x's sign."""
    a, h = f.local(V128), f.local(V128)
    f.get(x).op("f32x4.abs").set(a)
    if not cosh:
        _odd_poly(f, x, SINH_POLY)
    f.get(a).f32x4_const(0.5).op("f32x4.mul").call(exp).set(h)
    f.get(h).get(h).f32x4_const(0.5).op("f32x4.mul").op("f32x4.mul")
    f.f32x4_const(0.5).get(h).get(h).op("f32x4.mul").op("f32x4.div")
    f.op("f32x4.add" if cosh else "f32x4.sub")
    if cosh:
        return
    _sign_of(f, x)
    f.op("v128.or")
    f.get(a).f32x4_const(1.0).op("f32x4.lt").op("v128.bitselect")


def _log_large(f: Func, a: int, arg: Callable[[], object], log: int) -> None:
    """Push log(arg(a)), or log(a) + ln 2 where a > 1500 (where a² + 1 or a² - 1 is a² in float32, and a²
    may overflow)."""
    huge = f.local(V128)
    f.get(a).f32x4_const(1500.0).op("f32x4.gt").set(huge)
    f.get(a)
    arg()
    f.get(huge).op("v128.bitselect").call(log)
    f.f32x4_const(LN2).get(huge).op("v128.and").op("f32x4.add")


def asinh_v128(f: Func, x: int, log: int) -> None:
    """Push asinh(x) = sign(x) log(|x| + sqrt(x² + 1)), x + x z P(z) below 1/2."""
    a = f.local(V128)
    f.get(x).op("f32x4.abs").set(a)
    _odd_poly(f, x, ASINH_POLY)
    _log_large(f, a, lambda: f.get(a).get(a).get(a).op("f32x4.mul").f32x4_const(1.0).op("f32x4.add")
               .op("f32x4.sqrt").op("f32x4.add"), log)
    _sign_of(f, x)
    f.op("v128.or")
    f.get(a).f32x4_const(0.5).op("f32x4.lt").op("v128.bitselect")


def acosh_v128(f: Func, x: int, log: int) -> None:
    """Push acosh(x) = log(x + sqrt((x - 1)(x + 1))), sqrt(x - 1) P(x - 1) below 1.5; x < 1 gives NaN."""
    z, p = f.local(V128), f.local(V128)
    f.get(x).f32x4_const(1.0).op("f32x4.sub").set(z)
    _horner(f, z, ACOSH_POLY, p)
    f.get(p).get(z).op("f32x4.sqrt").op("f32x4.mul")
    _log_large(f, x, lambda: f.get(x).get(z).get(x).f32x4_const(1.0).op("f32x4.add").op("f32x4.mul")
               .op("f32x4.sqrt").op("f32x4.add"), log)
    f.get(z).f32x4_const(0.5).op("f32x4.lt").op("v128.bitselect")
    # x < 1 (z < 0) took the polynomial with sqrt(z) = NaN already; -inf and NaN pass through log as NaN


def atanh_v128(f: Func, x: int, log: int) -> None:
    """Push atanh(x) = log((1 + x) / (1 - x)) / 2, x + x z P(z) below 1/2; ±1 give ±inf, |x| > 1 NaN."""
    _odd_poly(f, x, ATANH_POLY)
    f.f32x4_const(1.0).get(x).op("f32x4.add").f32x4_const(1.0).get(x).op("f32x4.sub").op("f32x4.div").call(log)
    f.f32x4_const(0.5).op("f32x4.mul")
    f.get(x).op("f32x4.abs").f32x4_const(0.5).op("f32x4.lt").op("v128.bitselect")
