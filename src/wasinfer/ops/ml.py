"""The `ai.onnx.ml` ops scikit-learn and other classical-ML exporters emit: each row of the input
is one sample, scored on its own (the batch is not followed through them: they are graph ends)."""

from __future__ import annotations

from wasinfer.ops.definition import define

ML = "ai.onnx.ml"
for op in ("LinearClassifier", "LinearRegressor", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "Scaler",
           "Normalizer", "Binarizer", "Imputer", "ArrayFeatureExtractor"):
    define(op, domain=ML)
