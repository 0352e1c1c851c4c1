"""Sequences and optionals, folded away while compiling into the tensors they hold (passes/sequences.py): a
sequence is a list of tensors whose length and positions are known once shapes are static, an optional a tensor or
nothing, known as well."""

from __future__ import annotations

from wasinfer.ops.definition import Role, define

for _op, _summary in (
        ("SequenceConstruct", "a list of its inputs"),
        ("SequenceEmpty", "an empty list"),
        ("SequenceInsert", "the list with a tensor inserted at a constant position (appended by default)"),
        ("SequenceErase", "the list without the tensor at a constant position (the last by default)"),
        ("SequenceAt", "the tensor at a constant position, read as an Identity"),
        ("SequenceLength", "a constant: the list's length"),
        ("SplitToSequence", "one Slice per piece of constant sizes (a Squeeze each without keepdims); run-time sizes "
                            "while no piece is read"),
        ("ConcatFromSequence", "a Concat of the list (an Unsqueeze of each first with new_axis)"),
        ("SequenceMap", "its body inlined once per element, the outputs lists again"),
        ("Optional", "a tensor or nothing, known while compiling"),
        ("OptionalHasElement", "a constant: whether the optional holds a tensor"),
        ("OptionalGetElement", "the optional's tensor, read as an Identity")):
    define(_op, role=Role.INLINED, summary=_summary)
