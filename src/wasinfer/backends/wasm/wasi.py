"""The WASI command form: `_start` reads the inputs as .npy files on stdin and writes the outputs to stdout.

It is a thin front end over the ABI, in the same binary: the `wasinfer_*` exports stay, so one
module serves hosts that call the ABI and hosts that only run commands (`wasmtime run`,
`wasmedge`, Node's `node:wasi`, crun+WasmEdge containers). Only three WASI preview 1 functions
are imported (fd_read, fd_write, proc_exit), because those are what every WASI host has.

The .npy reader is deliberately small: it reads the header into a buffer, NUL-terminates it,
and looks for the `descr`, `fortran_order` and `shape` keys; the expected `descr` is known at
compile time, so the dtype check is a byte comparison. Any mismatch prints the expected and
the actual header on stderr and exits with status 2. The format is specified in docs/abi.md.

An input with symbolic dims (ABI version 3) takes any size within its ranges on its run-time axes:
`_start` checks each against its range, and dims that are one symbol against each other, with a
message naming the input and the axis (the run would only answer 1), then writes the header's
dims where the run reads them and reads as many values as they hold, packed. An output whose
dims each run decides gets them in its header, from where the run wrote them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.writer import I32, Func, Module
from wasinfer.ir import Graph
from wasinfer.ir.symbolic import affine, largest, smallest

WASI = "wasi_snapshot_preview1"
NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER = 10000  # bytes of .npy header text read; NumPy's own default limit (np.load max_header_size)
MAX_RANK = 64  # NumPy's NPY_MAXDIMS
EXIT_IO, EXIT_INPUT = 1, 2
STDIN, STDOUT, STDERR = 0, 1, 2
SPACE, NEWLINE, QUOTE, DQUOTE, COLON, COMMA, LPAREN, RPAREN, ZERO = (ord(c) for c in " \n'\":,()0")
EOF = -1  # what read_exact returns when stdin ends early (WASI errnos are positive)


@dataclass(frozen=True)
class WasiImports:
    fd_read: int
    fd_write: int
    proc_exit: int


def declare_wasi_imports(module: Module) -> WasiImports:
    """Imports take the first function indices, so this must run before any function is added."""
    iov_call = [I32, I32, I32, I32]  # fd, iovs, iovs_len, out: nread / nwritten → errno
    return WasiImports(
        fd_read=module.import_func(WASI, "fd_read", iov_call, [I32]),
        fd_write=module.import_func(WASI, "fd_write", iov_call, [I32]),
        proc_exit=module.import_func(WASI, "proc_exit", [I32], []),
    )


@dataclass(frozen=True)
class StreamTensor:
    """One .npy of the stream: where its bytes live and what its header must say."""

    name: str
    address: int
    dtype: np.dtype
    shape: tuple[int, ...]  # the 1 at batch_axis stands for N when batched; the largest at run-time axes
    batch_axis: int | None
    # the axes each run decides: an output's (ABI version 2, or dims that follow symbolic ones), a symbolic
    # input's (version 3: the .npy header gives them)
    run_time_axes: tuple[int, ...] = ()
    dims_address: int = 0  # where the actual dims are (int32 each, every axis), with run_time_axes
    ranges: tuple[tuple[int, int], ...] = ()  # an input's: (smallest, largest) of each run-time axis
    symbols: tuple[str, ...] = ()  # an input's: the symbol of each run-time axis (alike names are one dim)
    steps: tuple[int, ...] = ()  # an input's: each run-time axis takes only multiples of its step

    @property
    def batched(self) -> bool:
        return self.batch_axis is not None

    @property
    def descr(self) -> str:
        return self.dtype.newbyteorder("<").str  # '<f4', '|b1', ...: what np.save writes on little-endian

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def header_text(self, lead: str) -> str:
        """NumPy's header dict with the batch's dimension, and each run-time one, spelled `lead` (e.g. 'N');
        an input's run-time dims as their ranges, `MIN..MAX` (what an error says the header may hold)."""
        ranges = dict(zip(self.run_time_axes, self.ranges, strict=False))
        dims = [f"{ranges[axis][0]}..{ranges[axis][1]}" if axis in ranges
                else lead if axis == self.batch_axis or axis in self.run_time_axes else str(d)
                for axis, d in enumerate(self.shape)]
        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"  # Python's tuple repr
        return f"{{'descr': '{self.descr}', 'fortran_order': False, 'shape': {shape}, }}"


def npy_prefix(text_length: int) -> tuple[bytes, int]:
    """Magic, version and header length for a header of at least `text_length` bytes plus its newline.

    The total is padded to a multiple of 64 as np.save does, so the data that follows is aligned.
    Returns the 10- or 12-byte prefix (magic, version, length) and the total size with the padded text.
    """
    for version, length_format in ((1, "<H"), (2, "<I")):
        fixed = len(NPY_MAGIC) + 2 + struct.calcsize(length_format)
        total = -(-(fixed + text_length + 1) // 64) * 64
        if total - fixed < 2 ** (8 * struct.calcsize(length_format)):
            return NPY_MAGIC + bytes([version, 0]) + struct.pack(length_format, total - fixed), total
    raise ValueError("header too long for .npy")


def emit_wasi_start(module: Module, graph: Graph, max_batch: int, batch_axes: dict[str, int],
                    slots: dict[str, int], run: int, imports: WasiImports,
                    place_data: Callable[[np.ndarray], int], reserve: Callable[[int], int],
                    dims: dict[str, int], run_time_axes: dict[str, list[int]]) -> int:
    """Add `_start` (and its helpers) to `module` and return its function index. `batch_axes`: the
    inputs and outputs that carry the run-time batch, and on which axis (as in the metadata); `dims`:
    where each run writes the actual dims of the outputs whose shape it decides, and reads a symbolic
    input's; `run_time_axes`: the axes of each of those that a run decides (the metadata's)."""
    def tensor(name: str, fed: bool) -> StreamTensor:
        info = graph.info(name)
        axes = tuple(run_time_axes.get(name, ()))
        extent = graph.extents.get(name, ()) if fed else ()  # an input's symbols; an output's dims are read back
        return StreamTensor(name, slots[name], info.dtype, info.shape, batch_axes.get(name), axes, dims.get(name, 0),
                            tuple((smallest(extent[a], graph.symbols), largest(extent[a], graph.symbols))
                                  for a in axes if extent),
                            tuple(str(extent[a]) for a in axes if extent),
                            tuple(sum(affine(extent[a])[0].values()) for a in axes if extent))

    inputs = [tensor(n, fed=True) for n in graph.inputs]
    outputs = [tensor(n, fed=False) for n in graph.outputs]
    return _StartBuilder(module, imports, max_batch, place_data, reserve).emit(inputs, outputs, run, graph.run_errors)


class _StartBuilder:
    """Emits the helper functions once, then `_start` unrolled over the inputs and outputs."""

    def __init__(self, module: Module, imports: WasiImports, max_batch: int,
                 place_data: Callable[[np.ndarray], int], reserve: Callable[[int], int]):
        self.module, self.wasi, self.max_batch = module, imports, max_batch
        self.place_data = place_data
        self._strings: dict[bytes, int] = {}
        self.io = reserve(16)  # one iovec (8 bytes) and the nread/nwritten result
        self.header = reserve(16 + MAX_HEADER + 16)  # magic..length at +0, text at +16, NUL after it
        self.text = self.header + 16
        self.dims = reserve(4 * MAX_RANK)
        self.reserve = reserve
        self.memeq = self._memeq()
        self.skip_spaces = self._skip_spaces()
        self.read_exact = self._io_loop("wasi_read_exact", imports.fd_read, fd=STDIN)
        self.write_all = self._io_loop("wasi_write_all", imports.fd_write, fd=None)
        self.find_key = self._find_key()
        self.parse_shape = self._parse_shape()
        self.itoa = self._itoa()
        self.rstrip = self._rstrip()
        self.fail = self._fail()

    def string(self, text: str | bytes) -> tuple[int, int]:
        raw = text.encode() if isinstance(text, str) else text
        if raw not in self._strings:
            self._strings[raw] = self.place_data(np.frombuffer(raw, dtype=np.uint8))
        return self._strings[raw], len(raw)

    # -- helpers: small Wasm functions shared by every input and output --

    def _memeq(self) -> int:
        index, f = self.module.reserve([I32, I32, I32], [I32], name="wasi_memeq")
        a, b, n, i = 0, 1, 2, f.local(I32)
        with f.block(), f.block(b"\x03"):
            f.get(i).get(n).op("i32.ge_u").br_if(1)
            f.get(a).get(i).op("i32.add").mem("i32.load8_u")
            f.get(b).get(i).op("i32.add").mem("i32.load8_u").op("i32.ne")
            with f.if_():
                f.i32(0).op("return")
            f.inc(i).br(0)
        f.i32(1)
        return index

    def _skip_spaces(self) -> int:
        index, f = self.module.reserve([I32], [I32], name="wasi_skip_spaces")
        with f.block(), f.block(b"\x03"):
            f.get(0).mem("i32.load8_u").i32(SPACE).op("i32.ne").br_if(1)
            f.inc(0).br(0)
        f.get(0)
        return index

    def _io_loop(self, name: str, call: int, fd: int | None) -> int:
        """read_exact(ptr, n) / write_all(fd, ptr, n) → 0, a WASI errno, or EOF (no progress).

        WASI may transfer fewer bytes than asked (pipes do), so both loop until done.
        """
        params = [I32, I32] if fd is not None else [I32, I32, I32]
        index, f = self.module.reserve(params, [I32], name=name)
        ptr, n = len(params) - 2, len(params) - 1
        err, done = f.local(I32), f.local(I32)
        with f.block(), f.block(b"\x03"):
            f.get(n).op("i32.eqz").br_if(1)
            f.i32(self.io).get(ptr).mem("i32.store")
            f.i32(self.io).get(n).mem("i32.store", 4)
            (f.i32(fd) if fd is not None else f.get(0)).i32(self.io).i32(1).i32(self.io + 8).call(call).tee(err)
            with f.if_():
                f.get(err).op("return")
            f.i32(self.io + 8).mem("i32.load").tee(done).op("i32.eqz")
            with f.if_():
                f.i32(EOF).op("return")
            f.get(ptr).get(done).op("i32.add").set(ptr)
            f.get(n).get(done).op("i32.sub").set(n)
            f.br(0)
        f.i32(0)
        return index

    def _find_key(self) -> int:
        """find_key(text, key, key_len) → offset of the value after `'key':`, or -1.

        `text` is NUL-terminated, so no scan or comparison runs past it.
        """
        index, f = self.module.reserve([I32, I32, I32], [I32], name="wasi_find_key")
        text, key, key_len = 0, 1, 2
        i, quote, at = f.local(I32), f.local(I32), f.local(I32)
        f.i32(1).set(i)
        with f.block(), f.block(b"\x03"):
            f.get(text).get(i).op("i32.add").tee(at).mem("i32.load8_u").op("i32.eqz").br_if(1)
            f.get(at).i32(1).op("i32.sub").mem("i32.load8_u").tee(quote).i32(QUOTE).op("i32.eq")
            f.get(quote).i32(DQUOTE).op("i32.eq").op("i32.or")
            f.get(at).get(key).get(key_len).call(self.memeq).op("i32.and")
            f.get(at).get(key_len).op("i32.add").mem("i32.load8_u").get(quote).op("i32.eq").op("i32.and")
            with f.if_():
                f.get(at).get(key_len).op("i32.add").i32(1).op("i32.add").call(self.skip_spaces).tee(at)
                f.mem("i32.load8_u").i32(COLON).op("i32.eq")
                with f.if_():
                    f.get(at).i32(1).op("i32.add").call(self.skip_spaces).get(text).op("i32.sub").op("return")
            f.inc(i).br(0)
        f.i32(-1)
        return index

    def _parse_shape(self) -> int:
        """parse_shape(p, dims) → rank, or -1: a Python tuple of decimal ints, e.g. `(2, 3)`, `(4,)`, `()`."""
        index, f = self.module.reserve([I32, I32], [I32], name="wasi_parse_shape")
        p, dims = 0, 1
        rank, c, value = f.local(I32), f.local(I32), f.local(I32)

        def not_digit() -> None:
            f.get(c).i32(ZERO).op("i32.sub").i32(10).op("i32.ge_u")

        f.get(p).mem("i32.load8_u").i32(LPAREN).op("i32.ne")
        with f.if_():
            f.i32(-1).op("return")
        f.inc(p)
        with f.block(b"\x03"):
            f.get(p).call(self.skip_spaces).tee(p).mem("i32.load8_u").tee(c).i32(RPAREN).op("i32.eq")
            with f.if_():
                f.get(rank).op("return")
            not_digit()
            f.get(rank).i32(MAX_RANK).op("i32.ge_u").op("i32.or")
            with f.if_():
                f.i32(-1).op("return")
            f.i32(0).set(value)
            with f.block(), f.block(b"\x03"):
                f.get(p).mem("i32.load8_u").set(c)
                not_digit()
                f.br_if(1)
                f.get(value).i32(214748363).op("i32.gt_u")  # the next digit would overflow i32
                with f.if_():
                    f.i32(-1).op("return")
                f.get(value).i32(10).op("i32.mul").get(c).op("i32.add").i32(ZERO).op("i32.sub").set(value)
                f.inc(p).br(0)
            f.get(dims).get(rank).i32(4).op("i32.mul").op("i32.add").get(value).mem("i32.store")
            f.inc(rank)
            f.get(p).call(self.skip_spaces).tee(p).mem("i32.load8_u").tee(c).i32(COMMA).op("i32.eq")
            with f.if_():
                f.inc(p).br(1)
            f.get(c).i32(RPAREN).op("i32.eq")
            with f.if_():
                f.get(rank).op("return")
        f.i32(-1)
        return index

    def _itoa(self) -> int:
        """itoa(n, p) → end: writes n ≥ 0 in decimal at p."""
        index, f = self.module.reserve([I32, I32], [I32], name="wasi_itoa")
        n, p = 0, 1
        rest, end = f.local(I32), f.local(I32)
        f.get(p).i32(1).op("i32.add").set(end)
        f.get(n).set(rest)
        with f.block(), f.block(b"\x03"):
            f.get(rest).i32(10).op("i32.div_u").tee(rest).op("i32.eqz").br_if(1)
            f.inc(end).br(0)
        f.get(end).set(p)
        with f.block(b"\x03"):
            f.get(p).i32(1).op("i32.sub").tee(p)
            f.get(n).i32(10).op("i32.rem_u").i32(ZERO).op("i32.add").mem("i32.store8")
            f.get(n).i32(10).op("i32.div_u").tee(n).br_if(0)
        f.get(end)
        return index

    def _rstrip(self) -> int:
        """rstrip(p, n) → n without trailing spaces and newlines (the header's padding)."""
        index, f = self.module.reserve([I32, I32], [I32], name="wasi_rstrip")
        p, n, c = 0, 1, f.local(I32)
        with f.block(), f.block(b"\x03"):
            f.get(n).op("i32.eqz").br_if(1)
            f.get(p).get(n).op("i32.add").i32(1).op("i32.sub").mem("i32.load8_u").tee(c)
            f.i32(SPACE).op("i32.ne").get(c).i32(NEWLINE).op("i32.ne").op("i32.and").br_if(1)
            f.get(n).i32(1).op("i32.sub").set(n).br(0)
        f.get(n)
        return index

    def _fail(self) -> int:
        """fail(four (ptr, len) pairs, code): write the parts and a newline to stderr, then exit."""
        index, f = self.module.reserve([I32] * 8 + [I32], [], name="wasi_fail")
        for part in range(4):
            f.i32(STDERR).get(2 * part).get(2 * part + 1).call(self.write_all).op("drop")
        newline, _ = self.string("\n")
        f.i32(STDERR).i32(newline).i32(1).call(self.write_all).op("drop")
        f.get(8).call(self.wasi.proc_exit).op("unreachable")
        return index

    # -- _start --

    def emit(self, inputs: list[StreamTensor], outputs: list[StreamTensor], run: int, run_errors: list[str]) -> int:
        index, f = self.module.reserve([], [], name="_start")
        v = _InputLocals(status=f.local(I32), length=f.local(I32), at=f.local(I32), quote=f.local(I32),
                         batch=f.local(I32))
        first: dict[str, tuple[str, int, int]] = {}  # each symbol's first input dim: input, axis, where its size is
        for position, spec in enumerate(inputs):
            self._read_input(f, v, spec, position, len(inputs), first)
        batch = v.batch
        f.get(batch).i32(1).get(batch).op("select").set(batch)  # no batched input: run once
        f.get(batch).call(run).tee(v.status)
        with f.if_():
            for code, message in enumerate(run_errors, start=2):  # the run refused these inputs (Refuse nodes)
                f.get(v.status).i32(code).op("i32.eq")
                with f.if_():
                    self._emit_fail(f, [f"wasinfer: {message}"], EXIT_INPUT)
            self._emit_fail(f, ["wasinfer: wasinfer_run failed"], EXIT_IO)
        for spec in outputs:
            self._write_output(f, spec, batch)
        return index

    def _emit_fail(self, f: Func, parts: list[str], code: int, header_length: int | None = None) -> None:
        """Call fail with up to four constant strings, the last one optionally the header just read."""
        for part in parts:
            address, length = self.string(part)
            f.i32(address).i32(length)
        if header_length is not None:
            f.i32(self.text).get(header_length)
        for _ in range(4 - len(parts) - (header_length is not None)):
            f.i32(0).i32(0)
        f.i32(code).call(self.fail)

    def _read_input(self, f: Func, v: _InputLocals, spec: StreamTensor, position: int, count: int,
                    first: dict[str, tuple[str, int, int]]) -> None:
        prefix = f"wasinfer: input {spec.name!r} (.npy {position + 1} of {count} on stdin): "
        bound = f" with 1 <= N <= {self.max_batch}" if spec.batched else ""
        expected = f"; expected {spec.header_text('N')}{bound}, got "

        def fail_on_read(eof_reason: str) -> None:
            with f.if_():
                f.get(v.status).i32(EOF).op("i32.eq")
                with f.if_():
                    self._emit_fail(f, [prefix, eof_reason], EXIT_INPUT)
                self._emit_fail(f, [prefix, "cannot read stdin"], EXIT_IO)

        def fail_header(reason: str) -> None:
            with f.if_():
                f.i32(self.text).get(v.length).call(self.rstrip).set(v.length)
                self._emit_fail(f, [prefix, reason, expected], EXIT_INPUT, header_length=v.length)

        f.i32(self.header).i32(8).call(self.read_exact).tee(v.status)
        fail_on_read("stdin ended before this .npy (one .npy per input, in metadata order)")
        magic, _ = self.string(NPY_MAGIC)
        f.i32(self.header).i32(magic).i32(len(NPY_MAGIC)).call(self.memeq).op("i32.eqz")
        with f.if_():
            self._emit_fail(f, [prefix, "not a .npy file (bad magic string)"], EXIT_INPUT)
        self._read_header_length(f, v, prefix, fail_on_read)
        f.i32(self.text).get(v.length).call(self.read_exact).tee(v.status)
        fail_on_read("stdin ended inside the .npy header")
        f.i32(self.text).get(v.length).op("i32.add").i32(0).mem("i32.store8")  # the NUL the scanners stop at

        key, key_len = self.string("descr")
        f.i32(self.text).i32(key).i32(key_len).call(self.find_key).tee(v.at).i32(0).op("i32.lt_s")
        fail_header("malformed .npy header (no 'descr')")
        descr, descr_len = self.string(spec.descr)
        f.get(v.at).i32(self.text).op("i32.add").tee(v.at).mem("i32.load8_u").tee(v.quote).i32(QUOTE).op("i32.eq")
        f.get(v.quote).i32(DQUOTE).op("i32.eq").op("i32.or")
        f.get(v.at).i32(1).op("i32.add").i32(descr).i32(descr_len).call(self.memeq).op("i32.and")
        f.get(v.at).mem("i32.load8_u", 1 + descr_len).get(v.quote).op("i32.eq").op("i32.and").op("i32.eqz")
        fail_header(f"dtype differs ({spec.dtype.name} is '{spec.descr}')")

        key, key_len = self.string("fortran_order")
        f.i32(self.text).i32(key).i32(key_len).call(self.find_key).tee(v.at).i32(0).op("i32.lt_s")
        fail_header("malformed .npy header (no 'fortran_order')")
        false, false_len = self.string("False")
        f.get(v.at).i32(self.text).op("i32.add").i32(false).i32(false_len).call(self.memeq).op("i32.eqz")
        fail_header("fortran_order must be False (C order)")

        key, key_len = self.string("shape")
        f.i32(self.text).i32(key).i32(key_len).call(self.find_key).tee(v.at).i32(0).op("i32.lt_s")
        fail_header("malformed .npy header (no 'shape')")
        f.get(v.at).i32(self.text).op("i32.add").i32(self.dims).call(self.parse_shape).tee(v.at)
        f.i32(0).op("i32.lt_s")
        fail_header("malformed .npy header (bad 'shape')")
        f.get(v.at).i32(len(spec.shape)).op("i32.ne")
        for axis, size in enumerate(spec.shape):
            if axis != spec.batch_axis and axis not in spec.run_time_axes:
                f.i32(self.dims + 4 * axis).mem("i32.load").i32(size).op("i32.ne").op("i32.or")
        fail_header("shape differs")
        if spec.batch_axis is not None:
            self._take_batch(f, v, spec.batch_axis, fail_header)
        if spec.run_time_axes:
            self._take_symbolic_dims(f, v, spec, first, fail_header)
            f.i32(spec.address).i32(spec.dtype.itemsize)  # packed: as many values as the header's dims hold
            for axis in range(len(spec.shape)):
                f.i32(spec.dims_address + 4 * axis).mem("i32.load").op("i32.mul")
        elif spec.batch_axis is not None:
            f.i32(spec.address).get(v.batch).i32(spec.sample_bytes).op("i32.mul")
        else:
            f.i32(spec.address).i32(spec.sample_bytes)
        f.call(self.read_exact).tee(v.status)
        fail_on_read("stdin ended inside the tensor data")

    def _read_header_length(self, f: Func, v: _InputLocals, prefix: str,
                            fail_on_read: Callable[[str], None]) -> None:
        """Versions 1.0 (u16 length) and 2.0/3.0 (u32 length); 3.0 only allows UTF-8 names, not used here."""
        f.i32(self.header).mem("i32.load8_u", 6).tee(v.at).i32(1).op("i32.eq")
        with f.if_():
            f.i32(self.header + 8).i32(2).call(self.read_exact).tee(v.status)
            fail_on_read("stdin ended inside the .npy header")
            f.i32(self.header).mem("i32.load16_u", 8).set(v.length)
        f.get(v.at).i32(2).op("i32.eq").get(v.at).i32(3).op("i32.eq").op("i32.or")
        with f.if_():
            f.i32(self.header + 8).i32(4).call(self.read_exact).tee(v.status)
            fail_on_read("stdin ended inside the .npy header")
            f.i32(self.header).mem("i32.load", 8).set(v.length)
        f.get(v.at).i32(1).op("i32.lt_u").get(v.at).i32(3).op("i32.gt_u").op("i32.or")
        f.i32(self.header).mem("i32.load8_u", 7).op("i32.or")
        with f.if_():
            self._emit_fail(f, [prefix, "unsupported .npy format version (1.0, 2.0 and 3.0 are read)"], EXIT_INPUT)
        f.get(v.length).i32(MAX_HEADER).op("i32.gt_u")
        with f.if_():
            self._emit_fail(f, [prefix, f".npy header longer than {MAX_HEADER} bytes"], EXIT_INPUT)

    def _take_batch(self, f: Func, v: _InputLocals, axis: int, fail_header: Callable[[str], None]) -> None:
        """N from the shape's number at the batch axis: in range, and the same for every batched input."""
        f.i32(self.dims + 4 * axis).mem("i32.load").tee(v.at).i32(1).op("i32.lt_s")
        f.get(v.at).i32(self.max_batch).op("i32.gt_s").op("i32.or")
        fail_header(f"batch size N out of range (compiled max_batch is {self.max_batch})")
        f.get(v.batch).i32(0).op("i32.ne").get(v.at).get(v.batch).op("i32.ne").op("i32.and")
        fail_header("batch size N differs from an earlier input's")
        f.get(v.at).set(v.batch)

    def _take_symbolic_dims(self, f: Func, v: _InputLocals, spec: StreamTensor,
                            first: dict[str, tuple[str, int, int]], fail_header: Callable[[str], None]) -> None:
        """An input's run-time dims (ABI version 3) from its header: each within its range; every dim of the
        header written where the run reads them; each equal to the dims read before it that are the same symbol."""
        for axis, (low, high) in zip(spec.run_time_axes, spec.ranges, strict=True):
            f.i32(self.dims + 4 * axis).mem("i32.load").tee(v.at).i32(low).op("i32.lt_s")
            f.get(v.at).i32(high).op("i32.gt_s").op("i32.or")
            fail_header(f"axis {axis} is outside its range {low}..{high}")
        for axis, step in zip(spec.run_time_axes, spec.steps, strict=False):
            if step > 1:  # a range of multiples (MIN..MAX:STEP)
                f.i32(self.dims + 4 * axis).mem("i32.load").i32(step).op("i32.rem_s")
                fail_header(f"axis {axis} is not a multiple of {step}")
        f.i32(spec.dims_address).i32(self.dims).i32(4 * len(spec.shape)).memory_copy()
        for axis, symbol in zip(spec.run_time_axes, spec.symbols, strict=True):
            here = spec.dims_address + 4 * axis
            name, first_axis, address = first.setdefault(symbol, (spec.name, axis, here))
            if address == here:
                continue
            f.i32(here).mem("i32.load").i32(address).mem("i32.load").op("i32.ne")
            where = "this input" if name == spec.name else f"input {name!r}"
            fail_header(f"axis {axis} is the dim {symbol!r}, as axis {first_axis} of {where} is, but their sizes "
                        "differ")

    def _push_dim(self, f: Func, spec: StreamTensor, axis: int, batch: int) -> None:
        """This run's size of a varying axis: N on the batch axis, else the dim the run wrote."""
        if axis == spec.batch_axis:
            f.get(batch)
        else:
            f.i32(spec.dims_address + 4 * axis).mem("i32.load")

    def _write_output(self, f: Func, spec: StreamTensor, batch: int) -> None:
        """The header is fixed at compile time except N and the dims each run decides, which are written into a
        space-padded copy; as many bytes follow as those dims hold."""
        varying = sorted({*spec.run_time_axes, *([spec.batch_axis] if spec.batch_axis is not None else [])})
        if varying:
            pieces = [part.encode() for part in spec.header_text("\0").split("\0")]
            digits = sum(len(str(self.max_batch if axis == spec.batch_axis else spec.shape[axis])) for axis in varying)
            prefix, total = npy_prefix(sum(map(len, pieces)) + digits)
            buffer = self.reserve(total)
            at = f.local(I32)
            f.i32(buffer).i32(SPACE).i32(total).memory_fill()
            head_addr, head_len = self.string(prefix + pieces[0])
            f.i32(buffer).i32(head_addr).i32(head_len).memory_copy()
            f.i32(buffer + head_len).set(at)
            for axis, piece in zip(varying, pieces[1:], strict=True):
                self._push_dim(f, spec, axis, batch)
                f.get(at).call(self.itoa).set(at)
                piece_addr, piece_len = self.string(piece)
                f.get(at).i32(piece_addr).i32(piece_len).memory_copy()
                f.get(at).i32(piece_len).op("i32.add").set(at)
            f.i32(buffer + total - 1).i32(NEWLINE).mem("i32.store8")
        else:
            text = spec.header_text("").encode()
            prefix, total = npy_prefix(len(text))
            buffer, _ = self.string(prefix + text.ljust(total - len(prefix) - 1) + b"\n")
        f.i32(STDOUT).i32(buffer).i32(total).call(self.write_all)
        f.i32(STDOUT).i32(spec.address)
        f.i32(spec.dtype.itemsize)
        for axis, dim in enumerate(spec.shape):
            if axis in varying:
                self._push_dim(f, spec, axis, batch)
            else:
                f.i32(dim)
            f.op("i32.mul")
        f.call(self.write_all).op("i32.or")
        with f.if_():
            self._emit_fail(f, [f"wasinfer: output {spec.name!r}: cannot write to stdout"], EXIT_IO)


@dataclass(frozen=True)
class _InputLocals:
    status: int
    length: int
    at: int
    quote: int
    batch: int
