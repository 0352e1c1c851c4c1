"""Real WASI-NN applications, compiled from C with clang, run on wasinfer's `wasi_ephemeral_nn` host.

The classifier guest (tests/guests/classifier.c) is shaped like WasmEdge's WASI-NN examples; it must
give the digits demo the same answer through every encoding the host loads, and the same answer
ONNX Runtime gives on the host. The misuse guest (tests/guests/misuse.c) breaks the ABI one way per
mode; each must get the error code the ABI gives that mistake, and the host must run a normal
guest right after.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.guests.build import build_guest, require_toolchain
from tests.guests.digits_tflite import digits_tflite

pytest.importorskip("sklearn", reason="building the digits demo model needs scikit-learn")
pytest.importorskip("skl2onnx", reason="building the digits demo model needs skl2onnx")

from wasinfer.runtime.wasi_nn import EXIT_DEADLINE, EXIT_TRAP, GuestResult, NnLimits, Preload, run_guest

WASINFER_ENCODING = "wasinfer"  # a preload's encoding for a wasinfer module (it has no number)
WASINFER_GUEST_ENCODING = "autodetect"  # what a guest passes to load() for a wasinfer module's bytes
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DIGITS = 4  # test digits sent through each encoding: enough to see different classes
PROBABILITIES = 1  # the ONNX demo's (and its wasinfer module's) outputs: (label int64, probabilities f32 [1, 10])
TFLITE_PROBABILITIES = 0  # digits.tflite has the probabilities only
ATOL = 1e-5  # float32 scores of one model, run by different engines
GUEST_TIMEOUT = 60.0  # seconds: a bound for every guest so a broken host fails instead of hanging


@dataclass(frozen=True)
class Digits:
    directory: Path  # holds demo.onnx, digits.wasm, digits.tflite and digit{i}.f32, preopened as "/data"
    x: np.ndarray  # float32 [DIGITS, 64]
    probabilities: np.ndarray  # ONNX Runtime's, float32 [DIGITS, 10]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The digits demo (trained once per session, ~20 s), its compiled module and ORT's answers."""
    require_toolchain()
    import onnxruntime as ort

    from wasinfer.artifact import convert_onnx
    from wasinfer.registry.demo import ensure_demo_model, load_test_split

    directory = tmp_path_factory.mktemp("digits")
    onnx_path = ensure_demo_model(directory)
    x_test, y_test = load_test_split(directory)
    picks = [int(np.flatnonzero(y_test == label)[0]) for label in (0, 3, 7, 9)][:DIGITS]
    x = x_test[picks]
    for i, row in enumerate(x):
        (directory / f"digit{i}.f32").write_bytes(row.astype("<f4").tobytes())
    (directory / "digits.wasm").write_bytes(convert_onnx(onnx_path, max_batch=1, name="digits").wasm)
    (directory / "digits.tflite").write_bytes(digits_tflite(onnx_path.read_bytes()))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probabilities = np.concatenate([session.run(["probabilities"], {"input": row[None]})[0] for row in x])
    assert len(set(probabilities.argmax(axis=1).tolist())) == DIGITS, "the picked digits should differ"
    return Digits(directory, x, probabilities)


@dataclass(frozen=True)
class Answer:
    top: int
    scores: np.ndarray
    written: int


def parse(result: GuestResult) -> Answer:
    """The classifier's answer; fails with the guest's own output when it did not finish."""
    text = result.stdout.decode()
    assert result.exit_code == 0, f"guest exited {result.exit_code}: {text} {result.stderr.decode()}"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return Answer(int(fields["top"]), np.array(fields["scores"].split(), np.float32), int(fields["bytes"]))


def classify(digits: Digits, mode_args: list[str], index: int, *, stdin: bool = False,
             preloads: tuple[Preload, ...] = (), output: int = PROBABILITIES) -> Answer:
    wasm = build_guest("classifier.c")
    source = "-" if stdin else f"/data/digit{index}.f32"
    data = (digits.directory / f"digit{index}.f32").read_bytes() if stdin else b""
    result = run_guest(wasm, [*mode_args, source, "1x64", str(output)], preloads=preloads, stdin=data,
                       dirs=[(digits.directory, "/data")], deadline_seconds=GUEST_TIMEOUT)
    return parse(result)


def onnx_preload(digits: Digits, alias: str = "default") -> Preload:
    return Preload.parse(f"{alias}:ONNX:CPU:{digits.directory / 'demo.onnx'}")


# ------------------------------------------------------------------------------------- the classifier


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_classifier_by_name_matches_onnxruntime(digits: Digits, stdin: bool) -> None:
    for i in range(DIGITS):
        answer = classify(digits, ["name", "default"], i, stdin=stdin, preloads=(onnx_preload(digits),))
        assert answer.written == 10 * 4
        np.testing.assert_allclose(answer.scores, digits.probabilities[i], atol=ATOL)
        assert answer.top == int(digits.probabilities[i].argmax())


def test_classifier_by_bytes_reads_the_model_from_a_preopened_dir(digits: Digits) -> None:
    for i in range(DIGITS):
        answer = classify(digits, ["bytes", "onnx", "/data/demo.onnx"], i)
        np.testing.assert_allclose(answer.scores, digits.probabilities[i], atol=ATOL)
        assert answer.top == int(digits.probabilities[i].argmax())


def test_every_encoding_gives_the_same_answer(digits: Digits) -> None:
    """ONNX, TFLite and wasinfer's compiled module, each by bytes and by name: one answer, ORT's."""
    preloads = (onnx_preload(digits, "onnx-digits"),
                Preload.parse(f"tflite-digits:TensorflowLite:CPU:{digits.directory / 'digits.tflite'}"),
                Preload.parse(f"wasm-digits:{WASINFER_ENCODING}:CPU:{digits.directory / 'digits.wasm'}"))
    tflite = TFLITE_PROBABILITIES
    for i in range(DIGITS):
        answers = {
            "onnx bytes": classify(digits, ["bytes", "onnx", "/data/demo.onnx"], i),
            "onnx name": classify(digits, ["name", "onnx-digits"], i, preloads=preloads),
            "tflite bytes": classify(digits, ["bytes", "tensorflowlite", "/data/digits.tflite"], i, output=tflite),
            "tflite name": classify(digits, ["name", "tflite-digits"], i, preloads=preloads, output=tflite),
            "wasinfer bytes": classify(digits, ["bytes", WASINFER_GUEST_ENCODING, "/data/digits.wasm"], i),
            "wasinfer name": classify(digits, ["name", "wasm-digits"], i, preloads=preloads),
        }
        want = int(digits.probabilities[i].argmax())
        assert {name: a.top for name, a in answers.items()} == dict.fromkeys(answers, want)
        for name, answer in answers.items():
            np.testing.assert_allclose(answer.scores, digits.probabilities[i], atol=ATOL, err_msg=name)


def test_tflite_fixture_matches_tensorflow(tmp_path: Path) -> None:
    """TFLite through the ABI against TensorFlow itself: the committed dense_softmax fixture (made by
    TensorFlow's converter, unlike digits.tflite) and TensorFlow's reference output for it."""
    wasm = build_guest("classifier.c")
    reference = np.load(FIXTURES / "tflite_reference.npz")
    x, want = reference["dense_x_1"].astype(np.float32), reference["dense_probabilities_1"]
    assert x.shape == (1, 4)
    (tmp_path / "x.f32").write_bytes(x.astype("<f4").tobytes())
    model = FIXTURES / "dense_softmax.tflite"
    (tmp_path / "dense.tflite").write_bytes(model.read_bytes())
    runs = {
        "bytes": run_guest(wasm, ["bytes", "tensorflowlite", "/m/dense.tflite", "/m/x.f32", "1x4", "0"],
                           dirs=[(tmp_path, "/m")], deadline_seconds=GUEST_TIMEOUT),
        "name": run_guest(wasm, ["name", "dense", "/m/x.f32", "1x4", "0"],
                          preloads=[Preload.parse(f"dense:TensorflowLite:CPU:{model}")],
                          dirs=[(tmp_path, "/m")], deadline_seconds=GUEST_TIMEOUT),
    }
    for how, result in runs.items():
        answer = parse(result)
        assert answer.written == 3 * 4, how
        np.testing.assert_allclose(answer.scores, want[0], atol=ATOL, err_msg=how)
        assert answer.top == int(want[0].argmax()), how


# ------------------------------------------------------------------------------------------- misuse

INVALID_ARGUMENT, INVALID_ENCODING, BUSY, TOO_LARGE, NOT_FOUND = 1, 2, 4, 7, 8

# mode -> the codes its checked calls must get, from the witx error enum and WasmEdge's plugin (the
# ABI's reference host): a pointer or length outside the guest's memory, an unknown handle, target
# or tensor type, and a tensor the model cannot take are all invalid_argument; an unknown encoding
# is invalid_encoding; an unknown preload alias is not_found; an output larger than the guest's
# buffer is too_large. The spec leaves compute before set_input open (wasmtime answers runtime_error,
# WasmEdge's TFLite backend computes on whatever the input holds); this host calls it the guest's
# mistake, invalid_argument, and keeps runtime_error for a backend that fails while computing.
# After a failed get_output the context must still answer (the second code).
MISUSE: dict[str, list[int]] = {
    "oob_builder": [INVALID_ARGUMENT],
    "oob_builder_data": [INVALID_ARGUMENT],
    "builder_len_overflow": [INVALID_ARGUMENT],
    "builder_count_overflow": [INVALID_ARGUMENT],
    "graph_out_oob": [INVALID_ARGUMENT],
    "garbage_model": [INVALID_ARGUMENT],
    "unknown_encoding": [INVALID_ENCODING],
    "unknown_target": [INVALID_ARGUMENT],
    "unknown_alias": [NOT_FOUND],
    "alias_oob": [INVALID_ARGUMENT],
    "bad_graph": [INVALID_ARGUMENT],
    "bad_context": [INVALID_ARGUMENT, INVALID_ARGUMENT, INVALID_ARGUMENT],
    "compute_before_input": [INVALID_ARGUMENT],
    "wrong_dims": [INVALID_ARGUMENT],
    "wrong_rank": [INVALID_ARGUMENT],
    "wrong_type": [INVALID_ARGUMENT],
    "unknown_type": [INVALID_ARGUMENT],
    "short_data": [INVALID_ARGUMENT],
    "tensor_oob": [INVALID_ARGUMENT],
    "dims_oob": [INVALID_ARGUMENT],
    "bad_input_index": [INVALID_ARGUMENT],
    "small_output": [TOO_LARGE, 0],
    "bytes_written_oob": [INVALID_ARGUMENT, 0],
    "output_oob": [INVALID_ARGUMENT, 0],
    "bad_output_index": [INVALID_ARGUMENT, 0],
    # finalize, compute on the freed context, unload, init on the freed graph, unload it again
    "freed_handles": [0, INVALID_ARGUMENT, 0, INVALID_ARGUMENT, INVALID_ARGUMENT],
}


def errnos(result: GuestResult) -> list[int]:
    text = result.stdout.decode()
    assert result.exit_code == 0, f"guest exited {result.exit_code}: {text} {result.stderr.decode()}"
    return [int(line.split(":")[1]) for line in text.splitlines() if line.startswith("errno:")]


def assert_host_still_serves(digits: Digits) -> None:
    answer = classify(digits, ["name", "default"], 0, preloads=(onnx_preload(digits),))
    assert answer.top == int(digits.probabilities[0].argmax())


@pytest.mark.parametrize("mode", list(MISUSE))
def test_misuse_gets_the_abi_error_code(digits: Digits, mode: str) -> None:
    result = run_guest(build_guest("misuse.c"), [mode, "default"], preloads=[onnx_preload(digits)],
                       deadline_seconds=GUEST_TIMEOUT)
    assert errnos(result) == MISUSE[mode]
    assert "[WASI-NN]" in result.stderr.decode()  # the host says why, as WasmEdge logs it
    if MISUSE[mode][-1] == 0:  # the context answered after the failed call, with the whole output
        assert "written: 40" in result.stdout.decode()
    assert_host_still_serves(digits)


def test_a_model_over_the_load_limit_is_too_large(digits: Digits) -> None:
    """Unlike a builder that runs past the guest's memory (invalid_argument), these bytes are there."""
    result = run_guest(build_guest("misuse.c"), ["garbage_model"], limits=NnLimits(max_model_bytes=8),
                       deadline_seconds=GUEST_TIMEOUT)
    assert errnos(result) == [TOO_LARGE]
    assert_host_still_serves(digits)


def test_a_guest_cannot_make_the_host_hold_unbounded_contexts(digits: Digits) -> None:
    result = run_guest(build_guest("misuse.c"), ["many_contexts", "default"], preloads=[onnx_preload(digits)],
                       limits=NnLimits(max_contexts=5), deadline_seconds=GUEST_TIMEOUT)
    assert errnos(result) == [BUSY]
    assert "contexts: 5" in result.stdout.decode()
    assert_host_still_serves(digits)


def test_memory_cap_stops_an_allocation_loop(digits: Digits) -> None:
    """memory.grow fails at the cap, so malloc returns NULL and the guest stops with what it got."""
    cap = 64 << 20
    result = run_guest(build_guest("misuse.c"), ["oom"], memory_limit_bytes=cap, deadline_seconds=GUEST_TIMEOUT)
    text = result.stdout.decode()
    assert result.exit_code == 0, f"{result.exit_code}: {text} {result.stderr.decode()}"
    allocated = int(text.split("allocated:")[1].split()[0]) << 20
    assert cap // 2 < allocated < cap  # it got most of the cap, and not a page past it
    assert_host_still_serves(digits)


def test_memory_cap_reports_a_guest_that_traps_at_the_cap() -> None:
    """A guest whose own allocator gives up (here: the whole memory is asked for at once) is reported."""
    result = run_guest(build_guest("misuse.c"), ["grow_trap"], memory_limit_bytes=8 << 20,
                       deadline_seconds=GUEST_TIMEOUT)
    assert result.exit_code == EXIT_TRAP
    assert result.stderr.decode().strip().splitlines()[-1].startswith("wasinfer: ")
    assert "memory" in result.stderr.decode().strip().splitlines()[-1]


def test_deadline_stops_an_infinite_loop(digits: Digits) -> None:
    result = run_guest(build_guest("misuse.c"), ["spin"], deadline_seconds=1.0)
    assert result.exit_code == EXIT_DEADLINE
    last = result.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("wasinfer: ") and "deadline" in last
    assert_host_still_serves(digits)


# ---------------------------------------------------------------------------------------------- CLI


def wasinfer_cli(args: list[str], cwd: Path | None = None) -> GuestResult:
    """`wasinfer ARGS` in a child process, so the guest's stdout is the process's own."""
    done = subprocess.run([sys.executable, "-m", "wasinfer.cli.main", *args], cwd=cwd, capture_output=True,
                          timeout=GUEST_TIMEOUT, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return GuestResult(done.returncode, done.stdout, done.stderr)


def test_cli_runs_a_wasmedge_style_command_line(digits: Digits) -> None:
    """`wasmedge --dir .:. --nn-preload default:ONNX:CPU:demo.onnx app.wasm ARGS` becomes this."""
    wasm = build_guest("classifier.c")
    answer = parse(wasinfer_cli(["run-guest", str(wasm), "--dir", ".:.", "--nn-preload", "default:ONNX:CPU:demo.onnx",
                                 "--", "name", "default", "digit1.f32", "1x64", str(PROBABILITIES)],
                                cwd=digits.directory))
    np.testing.assert_allclose(answer.scores, digits.probabilities[1], atol=ATOL)
    assert answer.top == int(digits.probabilities[1].argmax())


def test_cli_rejects_a_bad_preload() -> None:
    result = wasinfer_cli(["run-guest", str(build_guest("classifier.c")), "--nn-preload", "default:ONNX"])
    assert result.exit_code == 2
    assert b"nn-preload" in result.stderr
