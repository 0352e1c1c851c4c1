"""Small `.tflite` models built in a test, with the flatc-generated builder functions the `tflite`
package ships (`TensorStart`, `OperatorAddInputs`, ...) and `flatbuffers.Builder`.

    b = TfliteBuilder()
    x = b.input([1, 5, 7, 3])
    y = b.op("DEPTH_TO_SPACE", [x], options={"BlockSize": 2})
    model = b.build(outputs=[y])

A tensor's shape may be left out (None): `build` then asks LiteRT, which infers every shape when it
allocates, and writes the file again with them, as a converter writes its shapes. Ops LiteRT does
not run (custom ops) need their output shapes given. Options are the builtin options table's
fields by their generated names (`{"BlockSize": 2}`: `DepthToSpaceOptionsAddBlockSize`); the table
is the op's usual one unless `options_table` names it. Quantized tensors carry a `Quant` (scale and
zero point, per tensor or per slice along `axis`), as the converter writes full-integer models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import tflite  # type: ignore[import-untyped]
from ai_edge_litert.interpreter import Interpreter, OpResolverType

TYPES = {np.dtype(np.float32): tflite.TensorType.FLOAT32, np.dtype(np.float16): tflite.TensorType.FLOAT16,
         np.dtype(np.int32): tflite.TensorType.INT32, np.dtype(np.int64): tflite.TensorType.INT64,
         np.dtype(np.bool_): tflite.TensorType.BOOL, np.dtype(np.int8): tflite.TensorType.INT8,
         np.dtype(np.uint8): tflite.TensorType.UINT8, np.dtype(np.int16): tflite.TensorType.INT16}
# The options table of the ops whose table is not named after the op.
OPTIONS = {"MAX_POOL_2D": "Pool2DOptions", "AVERAGE_POOL_2D": "Pool2DOptions", "CONV_2D": "Conv2DOptions",
           "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "MEAN": "ReducerOptions", "SUM": "ReducerOptions",
           "REDUCE_MAX": "ReducerOptions", "REDUCE_MIN": "ReducerOptions", "REDUCE_PROD": "ReducerOptions",
           "L2_NORMALIZATION": "L2NormOptions", "SPLIT_V": "SplitVOptions", "ARG_MAX": "ArgMaxOptions",
           "ARG_MIN": "ArgMinOptions", "BATCH_MATMUL": "BatchMatMulOptions", "SELECT_V2": "SelectV2Options",
           "L2_POOL_2D": "Pool2DOptions",           "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions"}
# Ops whose version 1 LiteRT does not register.
VERSIONS = {tflite.BuiltinOperator.BROADCAST_TO: 2}
DENSE, SPARSE_CSR = tflite.DimensionType.DENSE, tflite.DimensionType.SPARSE_CSR


def litert(raw: bytes) -> Interpreter:
    """LiteRT's interpreter with its builtin kernels only: the XNNPACK delegate it adds by default
    crashes on a DENSIFY of block-sparse weights feeding an ADD (LiteRT 2.3)."""
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=raw, experimental_op_resolver_type=resolver)


def run_litert(raw: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs by tensor name (the built models have no signature)."""
    interpreter = litert(raw)
    for detail in interpreter.get_input_details():
        interpreter.resize_tensor_input(detail["index"], feeds[detail["name"]].shape)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], feeds[detail["name"]])
    interpreter.invoke()
    return {d["name"]: np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()}


def _module(name: str) -> Any:
    return importlib.import_module(f"tflite.{name}")


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


@dataclass
class Sparse:
    """How a constant is stored sparse: one format per stored dim (the tensor's dims, then one
    block dim per entry of `block`, a (dim, size) pair), visited in order."""

    formats: list[int]
    block: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Quant:
    """Quantization parameters: real = (stored - zero_point) * scale, per slice along `axis` when there
    are several scales."""

    scale: list[float]
    zero_point: list[int]
    axis: int = 0


@dataclass
class _Tensor:
    name: str
    dtype: np.dtype[Any]
    shape: list[int] | None
    data: np.ndarray | None = None
    sparse: Sparse | None = None
    signature: list[int] | None = None  # -1 where the batch is left to run time
    variable: bool = False  # a state tensor (an LSTM's), which LiteRT keeps between invocations
    quant: Quant | None = None


@dataclass
class _Operator:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any]
    options_table: str | None
    custom: bytes


def encode_sparse(dense: np.ndarray, sparse: Sparse) -> tuple[np.ndarray, list[dict[str, Any]], list[int]]:
    """The values and dim metadata of `dense` in TFLite's sparsity format (see densify in the frontend,
    which reads them back): each blocked dim split into (blocks, size), the block dims appended; a
    SPARSE_CSR level keeps only the children that hold a non-zero."""
    rank, blocks = dense.ndim, dict(sparse.block)
    split: list[int] = []  # each blocked dim as (blocks, size)
    axis_of: dict[int, int] = {}  # dim → its axis in `split`; its block's axis follows it
    for dim, n in enumerate(dense.shape):
        axis_of[dim] = len(split)
        split += [n // blocks[dim], blocks[dim]] if dim in blocks else [n]
    order = [axis_of[dim] for dim in range(rank)] + [axis_of[dim] + 1 for dim, _ in sparse.block]
    moved = dense.reshape(split).transpose(order)
    level: list[np.ndarray] = [moved]
    metadata: list[dict[str, Any]] = []
    for fmt in sparse.formats:
        children: list[np.ndarray] = []
        if fmt == DENSE:
            for parent in level:
                children += list(parent)
            metadata.append({"format": DENSE, "dense_size": moved.shape[len(metadata)]})
        else:
            segments, indices = [0], []
            for parent in level:
                for i, child in enumerate(parent):
                    if np.any(child != 0):
                        indices.append(i)
                        children.append(child)
                segments.append(len(indices))
            metadata.append({"format": SPARSE_CSR, "segments": segments, "indices": indices})
        level = children
    values = np.array([np.asarray(v).item() for v in level], dense.dtype)
    return values, metadata, [dim for dim, _ in sparse.block]


class TfliteBuilder:
    def __init__(self) -> None:
        self.tensors: list[_Tensor] = []
        self.operators: list[_Operator] = []
        self.inputs: list[int] = []

    def tensor(self, shape: list[int] | None = None, dtype: Any = np.float32, name: str | None = None,
               quant: Quant | None = None) -> int:
        self.tensors.append(_Tensor(name or f"t{len(self.tensors)}", np.dtype(dtype), shape, quant=quant))
        return len(self.tensors) - 1

    def input(self, shape: list[int], dtype: Any = np.float32, name: str | None = None,
              batch: bool = False, quant: Quant | None = None) -> int:
        """A graph input; `batch` leaves its leading dim to run time (shape_signature -1)."""
        t = self.tensor(shape, dtype, name or f"input{len(self.inputs)}", quant)
        if batch:
            self.tensors[t].signature = [-1, *shape[1:]]
        self.inputs.append(t)
        return t

    def const(self, value: Any, dtype: Any = None, name: str | None = None, sparse: Sparse | None = None,
              quant: Quant | None = None) -> int:
        data = np.asarray(value, dtype)
        t = self.tensor(list(data.shape), data.dtype, name, quant)
        self.tensors[t].data, self.tensors[t].sparse = data, sparse
        return t

    def state(self, shape: list[int]) -> int:
        """A variable tensor (zeros until an op writes it)."""
        t = self.tensor(shape)
        self.tensors[t].variable = True
        return t

    def op(self, kind: str, inputs: list[int], outputs: int | list[int] = 1, options: dict[str, Any] | None = None,
           options_table: str | None = None, custom: bytes = b"", dtype: Any = np.float32,
           quant: Quant | None = None) -> Any:
        """Adds an operator; `outputs` is a count of new float32 (or `dtype`, quantized by `quant`) tensors of
        inferred shape, or the tensors themselves. Returns the output, or the list of them when there are
        several."""
        made = [self.tensor(None, dtype, quant=quant) for _ in range(outputs)] if isinstance(outputs, int) \
            else outputs
        self.operators.append(_Operator(kind, inputs, made, options or {}, options_table, custom))
        return made[0] if len(made) == 1 else made

    # -- writing ----------------------------------------------------------------------------------------------------

    def build(self, outputs: list[int]) -> bytes:
        if any(t.shape is None for t in self.tensors):
            raw = self._write(outputs)
            interpreter = litert(raw)
            interpreter.allocate_tensors()
            for detail in interpreter.get_tensor_details():
                if int(detail["index"]) >= len(self.tensors):  # the kernels' scratch tensors
                    continue
                tensor = self.tensors[int(detail["index"])]
                if tensor.shape is None:
                    tensor.shape = [int(d) for d in detail["shape"]]
        return self._write(outputs)

    def _write(self, outputs: list[int]) -> bytes:
        b = flatbuffers.Builder(1024)
        mod = {name: _module(name) for name in ("Model", "SubGraph", "Tensor", "Operator", "OperatorCode", "Buffer")}

        def ints(values: list[int], dtype: Any = np.int32) -> int:
            return int(b.CreateNumpyVector(np.array(values, dtype)))

        def table_vector(start: Any, items: list[int]) -> int:
            start(b, len(items))
            for item in reversed(items):
                b.PrependUOffsetTRelative(item)
            return int(b.EndVector())

        buffers = [self._buffer(b, mod["Buffer"], None)]  # buffer 0: empty, by convention
        tensor_offsets = []
        for tensor in self.tensors:
            buffer = 0
            sparsity = None
            if tensor.data is not None:
                data = tensor.data
                if tensor.sparse is not None:
                    values, metadata, block_map = encode_sparse(data, tensor.sparse)
                    sparsity = self._sparsity(b, tensor.sparse, metadata, block_map, tensor.data.ndim)
                    data = values
                buffers.append(self._buffer(b, mod["Buffer"], data))
                buffer = len(buffers) - 1
            name = b.CreateString(tensor.name)
            shape = ints(tensor.shape or [])
            signature = ints(tensor.signature) if tensor.signature else None
            quantization = self._quantization(b, tensor.quant) if tensor.quant is not None else None
            m = mod["Tensor"]
            m.TensorStart(b)
            m.TensorAddShape(b, shape)
            if signature is not None:
                m.TensorAddShapeSignature(b, signature)
            m.TensorAddType(b, TYPES[tensor.dtype])
            m.TensorAddBuffer(b, buffer)
            m.TensorAddName(b, name)
            if tensor.variable:
                m.TensorAddIsVariable(b, True)
            if quantization is not None:
                m.TensorAddQuantization(b, quantization)
            if sparsity is not None:
                m.TensorAddSparsity(b, sparsity)
            tensor_offsets.append(m.TensorEnd(b))

        codes: list[tuple[int, str]] = []
        operator_offsets = []
        for op in self.operators:
            builtin = tflite.BuiltinOperator.CUSTOM if op.kind.startswith("CUSTOM:") else getattr(
                tflite.BuiltinOperator, op.kind)
            code = (builtin, op.kind.removeprefix("CUSTOM:") if builtin == tflite.BuiltinOperator.CUSTOM else "")
            if code not in codes:
                codes.append(code)
            options_type, options = self._options(b, op)
            custom = b.CreateByteVector(op.custom) if op.custom else None
            op_inputs, op_outputs = ints(op.inputs), ints(op.outputs)
            m = mod["Operator"]
            m.OperatorStart(b)
            m.OperatorAddOpcodeIndex(b, codes.index(code))
            m.OperatorAddInputs(b, op_inputs)
            m.OperatorAddOutputs(b, op_outputs)
            if options is not None:
                m.OperatorAddBuiltinOptionsType(b, options_type)
                m.OperatorAddBuiltinOptions(b, options)
            if custom is not None:
                m.OperatorAddCustomOptions(b, custom)
            operator_offsets.append(m.OperatorEnd(b))

        code_offsets = []
        for builtin, custom_code in codes:
            custom_name = b.CreateString(custom_code) if custom_code else None
            m = mod["OperatorCode"]
            m.OperatorCodeStart(b)
            m.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
            m.OperatorCodeAddBuiltinCode(b, builtin)
            m.OperatorCodeAddVersion(b, VERSIONS.get(builtin, 1))
            if custom_name is not None:
                m.OperatorCodeAddCustomCode(b, custom_name)
            code_offsets.append(m.OperatorCodeEnd(b))

        s = mod["SubGraph"]
        tensors_vec = table_vector(s.SubGraphStartTensorsVector, tensor_offsets)
        operators_vec = table_vector(s.SubGraphStartOperatorsVector, operator_offsets)
        graph_inputs, graph_outputs = ints(self.inputs), ints(outputs)
        graph_name = b.CreateString("main")
        s.SubGraphStart(b)
        s.SubGraphAddTensors(b, tensors_vec)
        s.SubGraphAddOperators(b, operators_vec)
        s.SubGraphAddInputs(b, graph_inputs)
        s.SubGraphAddOutputs(b, graph_outputs)
        s.SubGraphAddName(b, graph_name)
        graph = s.SubGraphEnd(b)

        m = mod["Model"]
        subgraphs = table_vector(m.ModelStartSubgraphsVector, [graph])
        codes_vec = table_vector(m.ModelStartOperatorCodesVector, code_offsets)
        buffers_vec = table_vector(m.ModelStartBuffersVector, buffers)
        description = b.CreateString("tests/tflite_builder.py")
        m.ModelStart(b)
        m.ModelAddVersion(b, 3)
        m.ModelAddOperatorCodes(b, codes_vec)
        m.ModelAddSubgraphs(b, subgraphs)
        m.ModelAddDescription(b, description)
        m.ModelAddBuffers(b, buffers_vec)
        b.Finish(m.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b: flatbuffers.Builder, m: Any, data: np.ndarray | None) -> int:
        vector = b.CreateByteVector(np.ascontiguousarray(data).tobytes()) if data is not None else None
        m.BufferStart(b)
        if vector is not None:
            m.BufferAddData(b, vector)
        return int(m.BufferEnd(b))

    @staticmethod
    def _quantization(b: flatbuffers.Builder, quant: Quant) -> int:
        m = _module("QuantizationParameters")
        scale = b.CreateNumpyVector(np.array(quant.scale, np.float32))
        zero_point = b.CreateNumpyVector(np.array(quant.zero_point, np.int64))
        m.QuantizationParametersStart(b)
        m.QuantizationParametersAddScale(b, scale)
        m.QuantizationParametersAddZeroPoint(b, zero_point)
        m.QuantizationParametersAddQuantizedDimension(b, quant.axis)
        return int(m.QuantizationParametersEnd(b))

    @staticmethod
    def _sparsity(b: flatbuffers.Builder, sparse: Sparse, metadata: list[dict[str, Any]], block_map: list[int],
                  rank: int) -> int:
        d, s, v = _module("DimensionMetadata"), _module("SparsityParameters"), _module("Int32Vector")
        dims = []
        for entry in metadata:
            vectors = []
            if entry["format"] == SPARSE_CSR:
                for values in (entry["segments"], entry["indices"]):
                    array = b.CreateNumpyVector(np.array(values, np.int32))
                    v.Int32VectorStart(b)
                    v.Int32VectorAddValues(b, array)
                    vectors.append(v.Int32VectorEnd(b))
            d.DimensionMetadataStart(b)
            d.DimensionMetadataAddFormat(b, entry["format"])
            if entry["format"] == DENSE:
                d.DimensionMetadataAddDenseSize(b, entry["dense_size"])
            else:
                d.DimensionMetadataAddArraySegmentsType(b, tflite.SparseIndexVector.Int32Vector)
                d.DimensionMetadataAddArraySegments(b, vectors[0])
                d.DimensionMetadataAddArrayIndicesType(b, tflite.SparseIndexVector.Int32Vector)
                d.DimensionMetadataAddArrayIndices(b, vectors[1])
            dims.append(d.DimensionMetadataEnd(b))
        order = b.CreateNumpyVector(np.arange(rank + len(block_map), dtype=np.int32))
        blocks = b.CreateNumpyVector(np.array(block_map, np.int32)) if block_map else None
        s.SparsityParametersStartDimMetadataVector(b, len(dims))
        for dim in reversed(dims):
            b.PrependUOffsetTRelative(dim)
        dims_vec = b.EndVector()
        s.SparsityParametersStart(b)
        s.SparsityParametersAddTraversalOrder(b, order)
        if blocks is not None:
            s.SparsityParametersAddBlockMap(b, blocks)
        s.SparsityParametersAddDimMetadata(b, dims_vec)
        return int(s.SparsityParametersEnd(b))

    @staticmethod
    def _options(b: flatbuffers.Builder, op: _Operator) -> tuple[int, int | None]:
        if op.kind.startswith("CUSTOM:"):
            return 0, None
        table = op.options_table or OPTIONS.get(op.kind, f"{_camel(op.kind)}Options")
        options_type = getattr(tflite.BuiltinOptions, table, None)
        if options_type is None:
            if op.options:
                raise ValueError(f"{op.kind} has no options table {table}")
            return 0, None
        m = _module(table)
        vectors = {k: b.CreateNumpyVector(np.array(v, np.int32)) for k, v in op.options.items()
                   if isinstance(v, list)}
        getattr(m, f"{table}Start")(b)
        for key, value in op.options.items():
            getattr(m, f"{table}Add{key}")(b, vectors.get(key, value))
        return int(options_type), int(getattr(m, f"{table}End")(b))
