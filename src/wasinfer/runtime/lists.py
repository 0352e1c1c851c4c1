"""Sequence and optional inputs and outputs of a module, to and from the tensors that carry them.

A module's slots are tensors; the metadata's `list_inputs` / `list_outputs` (docs/abi.md, "Sequences and
optionals") say which of them carry a sequence (its elements, at most as many as it holds, and its count) or an
optional (its element and a "present" flag). `WasmModel.run` takes a list of arrays for a sequence and an array,
a list or None for an optional, and returns them so: `pack` and `unpack` translate, checking the counts first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wasinfer.artifact.metadata import ListSlot, Metadata, TensorSlot
from wasinfer.runtime.base import InputError, ModelFault


def pack(metadata: Metadata, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The module's tensor inputs for `inputs`, where each sequence or optional input is given by its own name
    (InputError naming what is wrong: a count outside the compiled range, a tensor where a list belongs)."""
    specs = {t.name: t for t in metadata.inputs}
    tensors: dict[str, np.ndarray] = {}
    listed = {slot.name for slot in metadata.list_inputs}
    for name, value in inputs.items():
        if name not in listed:
            tensors[name] = value
    for slot in metadata.list_inputs:
        if slot.name not in inputs:
            continue  # the run's own check names what is missing
        value = inputs[slot.name]
        if slot.kind != "sequence":
            assert isinstance(slot.present, str)
            tensors[slot.present] = np.array(value is not None)
            if slot.kind == "optional":
                tensors[slot.elements[0]] = _filler(specs[slot.elements[0]]) if value is None else value
                continue
        if value is None and slot.kind == "optional_sequence":
            value = [] if slot.counts is None else [None] * slot.counts[0]
        _sequence(slot, value, specs, tensors)
    return tensors


def _sequence(slot: ListSlot, value: Any, specs: dict[str, TensorSlot], tensors: dict[str, np.ndarray]) -> None:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"input {slot.name!r} is a sequence: give a list of arrays, not {type(value).__name__}")
    low, high = slot.counts or (len(slot.elements), len(slot.elements))
    if not low <= len(value) <= high:
        exactly = f"exactly {low}" if low == high else f"{low}..{high}"
        raise InputError(f"input {slot.name!r}: a sequence of {exactly} tensors (compiled --sequence "
                         f"{slot.name}={low}..{high}), got {len(value)}")
    for index, element in enumerate(slot.elements):
        given = value[index] if index < len(value) else None
        tensors[element] = _filler(specs[element]) if given is None else given
    if slot.count is not None:
        tensors[slot.count] = np.array(len(value), np.int64)


def _filler(spec: TensorSlot) -> np.ndarray:
    """What an unused slot gets: zeros at the smallest dims its ranges allow (nothing reads them)."""
    shape = list(spec.shape)
    for axis, (smallest, _) in zip(spec.run_time_axes, spec.ranges, strict=False):
        shape[axis] = smallest
    return np.zeros(shape, np.dtype(spec.dtype))


def unpack(metadata: Metadata, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The run's outputs with each sequence output a list of arrays and each optional one an array, a list or
    None; a count the module wrote past its slots is its fault (ModelFault)."""
    carried = {t for slot in metadata.list_outputs
               for t in (*slot.elements, slot.count, slot.present) if isinstance(t, str)}
    values: dict[str, Any] = {name: array for name, array in outputs.items() if name not in carried}
    for slot in metadata.list_outputs:
        present = bool(outputs[slot.present]) if isinstance(slot.present, str) else slot.present
        if slot.kind != "sequence" and not present:
            values[slot.name] = None
        elif slot.kind == "optional":
            values[slot.name] = outputs[slot.elements[0]]
        else:
            count = len(slot.elements) if slot.count is None else int(outputs[slot.count])
            if not 0 <= count <= len(slot.elements):
                raise ModelFault(f"model {metadata.name!r} wrote count {count} for sequence output {slot.name!r}, "
                                 f"which has {len(slot.elements)} slots")
            values[slot.name] = [outputs[e] for e in slot.elements[:count]]
    return values


__all__ = ["pack", "unpack"]
