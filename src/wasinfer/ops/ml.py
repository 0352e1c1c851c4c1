"""The `ai.onnx.ml` ops scikit-learn and other classical-ML exporters emit: each row of the input
is one sample, scored on its own, so a batch on axis 0 stays on axis 0 of every output."""

from __future__ import annotations

from wasinfer.ops.batch import elementwise, per_sample
from wasinfer.ops.definition import BatchFlow, BatchView, define

ML = "ai.onnx.ml"


@per_sample
def rows(view: BatchView) -> BatchFlow:
    """Axis 0 of a matrix of samples.

    Each row is one sample (its features); a batch on the feature axis, or a single sample as a vector, would
    score features as samples."""
    if view.first != 0 or (view.in_rank or 0) < 2:
        return view.mixes(f"it scores rows of a matrix and the batch is axis {view.first} of rank {view.in_rank}")
    return view.same(0)


for op in ("LinearClassifier", "LinearRegressor", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "Scaler",
           "Normalizer", "Binarizer", "Imputer", "ArrayFeatureExtractor", "SVMClassifier", "SVMRegressor",
           "TreeEnsemble"):
    define(op, domain=ML, batch=rows)


@per_sample
def values(view: BatchView) -> BatchFlow:
    """Keeps its axis: each value becomes a vector along a new last axis."""
    return view.same(view.first)


define("OneHotEncoder", domain=ML, batch=values)

define("LabelEncoder", domain=ML, batch=elementwise)  # one value in, one value out, whatever the shape
