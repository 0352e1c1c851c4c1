"""Convolutions, pools, normalisations and spatial rearrangements: ops over NCHW-style tensors
that slide or normalise over the axes after the first two, so a batch must be axis 0."""

from __future__ import annotations

from wasinfer.ops.batch import normalise_axis, spatial
from wasinfer.ops.definition import Fusion, define

define("Conv", fusion=Fusion.PRODUCER, batch=spatial)
define("ConvTranspose", batch=spatial)
for op in ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
    define(op, batch=spatial)
define("BatchNormalization", fusion=Fusion.PRODUCER, batch=spatial)
for op in ("InstanceNormalization", "LRN", "DepthToSpace", "SpaceToDepth", "Resize", "Upsample"):
    define(op, batch=spatial)
define("LayerNormalization", batch=normalise_axis)
