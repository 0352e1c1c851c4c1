"""Two code variants in one artifact: plain SIMD128, and relaxed SIMD's fused multiply-add for hosts that have it.

`wasinfer convert` (the default `--simd auto`) compiles a model twice: once with plain SIMD128 kernels, which
every engine runs and which give the same bits everywhere, and once with `f32x4.relaxed_madd` in the
GEMM and convolution kernels and the rational sigmoid and tanh (one FMA instruction where the CPU has one:
about 10% faster in the GEMM, 1.3-1.4x in those activations, results different in the last bits). The
artifact is the plain module, whose code section a host may replace by
the relaxed one, carried in the custom section `wasinfer.relaxed_code`. Nothing else may differ between
the two builds (types, imports, functions, memory, data, exports: the kernels' layouts and weights do
not depend on the variant), which `attach_relaxed_code` checks, so the swap is one section's bytes.

Engines that do not know the section ignore it (a browser without relaxed SIMD runs the plain code); the
wasinfer runtime swaps it in on an engine made with `make_engine(relaxed_simd=True)`, its default.
Why not two whole modules: the weights, most of an artifact's bytes, would be stored twice; the code
section is typically a tenth of a model or less.
"""

from __future__ import annotations

from wasinfer.artifact.metadata import custom_section, read_custom_sections, sections
from wasinfer.backends.wasm.writer import uleb

RELAXED_CODE_SECTION = "wasinfer.relaxed_code"
CODE = 10


def _split(wasm: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The non-custom sections other than code, and the code section's payload."""
    found = list(sections(wasm))
    code = [payload for sid, payload in found if sid == CODE]
    if len(code) != 1:
        raise ValueError("a module without exactly one code section")
    return [(sid, payload) for sid, payload in found if sid not in (0, CODE)], code[0]


def attach_relaxed_code(plain: bytes, relaxed: bytes) -> bytes:
    """`plain` with `relaxed`'s code section carried in a custom section; ValueError if the two builds differ in
    anything but their code (then the variant cannot be swapped in safely)."""
    plain_rest, _ = _split(plain)
    relaxed_rest, relaxed_code = _split(relaxed)
    if plain_rest != relaxed_rest:
        differ = sorted({sid for (sid, a), (_, b) in zip(plain_rest, relaxed_rest, strict=False) if a != b})
        raise ValueError(f"the relaxed-SIMD build differs from the plain one outside its code (sections {differ})")
    return plain + custom_section(RELAXED_CODE_SECTION, relaxed_code)


def has_relaxed_code(wasm: bytes) -> bool:
    return RELAXED_CODE_SECTION in read_custom_sections(wasm)


def select_code(wasm: bytes, relaxed: bool) -> bytes:
    """The module an engine runs: with `relaxed` and a relaxed variant, its code in place of the plain code (and
    the variant's section dropped); otherwise `wasm` itself."""
    try:
        variant = read_custom_sections(wasm).get(RELAXED_CODE_SECTION) if relaxed else None
    except ValueError:  # not a module this can read: the engine's own error will say what is wrong
        return wasm
    if variant is None:
        return wasm
    name = uleb(len(RELAXED_CODE_SECTION)) + RELAXED_CODE_SECTION.encode()
    out = bytearray(wasm[:8])
    for sid, payload in sections(wasm):
        if sid == CODE:
            payload = variant
        elif sid == 0 and payload.startswith(name):
            continue
        out += bytes([sid]) + uleb(len(payload)) + payload
    return bytes(out)
