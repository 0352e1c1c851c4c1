"""Convolutions, pools, normalisations and spatial rearrangements: ops over NCHW-style tensors
that slide or normalise over the axes after the first two, so a batch must be axis 0."""

from __future__ import annotations

from wasinfer.ops import extent as ex
from wasinfer.ops.batch import normalise_axis, spatial
from wasinfer.ops.definition import BatchFlow, BatchView, Fusion, define


def _picks_samples(view: BatchView) -> BatchFlow:
    """Never.

    Each region's batch index picks the sample it pools from: regions and samples are not paired."""
    if all(a is None for a in view.axes):
        return view.none()
    return view.mixes("its batch indices pick which sample each region reads")


define("Conv", fusion=Fusion.PRODUCER, batch=spatial, extent=ex.window(0.0))
define("DeformConv", batch=spatial, summary="2-D; each tap sampled bilinearly at its run-time offset, times the "
                                            "mask; groups and offset groups")
define("ConvTranspose", batch=spatial, extent=ex.conv_transpose)
define("MaxPool", batch=spatial, extent=ex.window(ex.NEG_INF))
define("AveragePool", batch=spatial, extent=ex.average_pool)
define("GlobalMaxPool", batch=spatial, extent=ex.global_pool(ex.NEG_INF))
define("GlobalAveragePool", batch=spatial, extent=ex.global_pool(0.0))
for op in ("LpPool", "GlobalLpPool"):
    define(op, batch=spatial)
define("BatchNormalization", fusion=Fusion.PRODUCER, batch=spatial, extent=ex.same)
define("LRN", batch=spatial, extent=ex.same)
define("Resize", batch=spatial, extent=ex.resize)
define("InstanceNormalization", batch=spatial, extent=ex.instance_norm)
for op in ("DepthToSpace", "SpaceToDepth", "Upsample"):
    define(op, batch=spatial)
define("GridSample", batch=spatial,
       summary="samples each channel at the grid's points: nearest, linear (any rank), cubic (2-D); zeros, border or "
               "reflection padding")
define("AffineGrid", batch=spatial, summary="the sampling grid of a batch of affine transforms (2-D and 3-D); "
                                            "size must be a constant")
define("RoiAlign", batch=_picks_samples,
       summary="avg or max over each region's bins, sampling_ratio 0 adaptive to the region read at run time")
define("MaxUnpool", batch=spatial,
       summary="each input element written where its run-time index says, over the whole output; zeros elsewhere")
define("Col2Im", batch=spatial, summary="sums each column element into its image position (fold); image_shape and "
                                        "block_shape must be constants")
define("MaxRoiPool", batch=_picks_samples,
       summary="the maximum of each bin of each region read at run time, corners rounded (Fast R-CNN)")
define("LayerNormalization", batch=normalise_axis, extent=ex.layer_norm)
