"""ai.onnx.ml kernels against ONNX Runtime: scikit-learn models exported by skl2onnx, then
each op on its own, with randomised tree ensembles for the aggregation corner cases."""

from __future__ import annotations

import os
import warnings
import zlib
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.parity import assert_matches_ort, ort_run, wasm_run
from wasinfer.artifact import convert_onnx
from wasinfer.backends.wasm import UnsupportedModel
from wasinfer.runtime import WasmModel

sklearn = pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")

from skl2onnx import convert_sklearn  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import LabelEncoder, Normalizer, OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.svm import SVC, SVR, LinearSVC, NuSVC, NuSVR, OneClassSVM  # noqa: E402

ML_OPSET = 3
SEED_SALT = int(os.environ.get("WASINFER_TEST_SEED", "0"))  # vary it to fuzz the random models further
TARGET_OPSET = {"": 15, "ai.onnx.ml": ML_OPSET}
DATASETS = {"iris": load_iris, "digits": load_digits, "breast_cancer": load_breast_cancer, "diabetes": load_diabetes}


def split(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = DATASETS[dataset](return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0)
    return x_train, x_test, y_train, y_test


def export(model: Any, features: int) -> onnx.ModelProto:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    # an SVC without probabilities has no predict_proba, yet skl2onnx gives it the zipmap option
    zipmap = hasattr(model, "predict_proba") or isinstance(final, (SVC, NuSVC))
    options = {id(model): {"zipmap": False}} if zipmap else None
    return convert_sklearn(model, initial_types=[("input", FloatTensorType([None, features]))],
                           options=options, target_opset=TARGET_OPSET)


def assert_sklearn_parity(model: Any, dataset: str) -> None:
    """Whole test split through ORT and the module: identical labels, close scores."""
    x_train, x_test, y_train, _ = split(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True), deprecated in scikit-learn 1.9
        warnings.simplefilter("ignore", DeprecationWarning)  # skl2onnx's HistGradientBoosting converter's bools
        model.fit(x_train, y_train)
        onx = export(model, x_train.shape[1])
    module = WasmModel(convert_onnx(onx, max_batch=len(x_test)).wasm)
    got = module.run({"input": x_test})
    want = ort_run(onx, {"input": x_test})
    for output, expected in zip(onx.graph.output, want, strict=True):
        actual = got[output.name]
        assert actual.shape == expected.shape, output.name
        if expected.dtype == np.int64:
            np.testing.assert_array_equal(actual, expected, err_msg=output.name)
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5, err_msg=output.name)


CLASSIFIERS = [
    ("mlp", lambda: MLPClassifier((16,), max_iter=300, random_state=0), "iris"),
    ("logistic_binary", lambda: LogisticRegression(max_iter=2000), "breast_cancer"),
    ("logistic_multiclass", lambda: LogisticRegression(max_iter=1000), "iris"),
    ("linear_svc", lambda: LinearSVC(random_state=0), "iris"),
    ("linear_svc_binary", lambda: LinearSVC(random_state=0), "breast_cancer"),
    ("random_forest", lambda: RandomForestClassifier(10, max_depth=8, random_state=0), "digits"),
    ("random_forest_binary", lambda: RandomForestClassifier(10, random_state=0), "breast_cancer"),
    ("gradient_boosting", lambda: GradientBoostingClassifier(n_estimators=10, random_state=0), "iris"),
    ("gradient_boosting_binary", lambda: GradientBoostingClassifier(n_estimators=15, random_state=0),
     "breast_cancer"),
    ("pipeline", lambda: make_pipeline(StandardScaler(), Normalizer(), LogisticRegression(max_iter=1000)), "iris"),
    ("hist_gradient_boosting", lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), "iris"),
    ("hist_gradient_boosting_binary", lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
     "breast_cancer"),
]
REGRESSORS = [
    ("linear", lambda: LinearRegression(), "diabetes"),
    ("random_forest", lambda: RandomForestRegressor(10, max_depth=10, random_state=0), "diabetes"),
    ("gradient_boosting", lambda: GradientBoostingRegressor(n_estimators=20, random_state=0), "diabetes"),
    ("mlp", lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0), "diabetes"),
    ("pipeline", lambda: make_pipeline(StandardScaler(), LinearRegression()), "diabetes"),
    ("hist_gradient_boosting", lambda: HistGradientBoostingRegressor(max_iter=20, random_state=0), "diabetes"),
]


@pytest.mark.parametrize("name,make,dataset", CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_sklearn_classifier(name: str, make: Any, dataset: str) -> None:
    assert_sklearn_parity(make(), dataset)


@pytest.mark.parametrize("name,make,dataset", REGRESSORS, ids=[r[0] for r in REGRESSORS])
def test_sklearn_regressor(name: str, make: Any, dataset: str) -> None:
    assert_sklearn_parity(make(), dataset)


KERNELS = ["rbf", "linear", "poly", "sigmoid"]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("probability", [True, False], ids=["probability", "decision"])
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
def test_svc_pipeline(kernel: str, probability: bool, dataset: str) -> None:
    """SVMClassifier: one-vs-one votes for the label; Platt-scaled pairs coupled into class
    probabilities (iris: three classes, breast_cancer: binary), or the raw decision values."""
    assert_sklearn_parity(make_pipeline(StandardScaler(), SVC(kernel=kernel, probability=probability,
                                                              random_state=0)), dataset)


def test_svc_with_ten_classes_and_nu_svc() -> None:
    """45 pairs of classes coupled into 10 probabilities; NuSVC exports as the same op."""
    assert_sklearn_parity(make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)), "digits")
    assert_sklearn_parity(make_pipeline(StandardScaler(), NuSVC(nu=0.3, kernel="poly", random_state=0)), "iris")


@pytest.mark.parametrize("kernel", KERNELS)
def test_svr_pipeline(kernel: str) -> None:
    assert_sklearn_parity(make_pipeline(StandardScaler(), SVR(kernel=kernel, C=10.0)), "diabetes")


def test_nu_svr_and_one_class_svm() -> None:
    """NuSVR is SVMRegressor; OneClassSVM its one_class form, whose scores are then signed."""
    assert_sklearn_parity(make_pipeline(StandardScaler(), NuSVR(nu=0.4)), "diabetes")
    x_train, x_test, _, _ = split("diabetes")
    model = make_pipeline(StandardScaler(), OneClassSVM(nu=0.2)).fit(x_train)
    onx = export(model, x_train.shape[1])
    assert "SVMRegressor" in [n.op_type for n in onx.graph.node]
    assert_matches_ort(onx, {"input": x_test}, max_batch=len(x_test))


def svm_classifier(classes: int, transform: str = "NONE", probability: bool = False,
                   **extra: Any) -> onnx.ModelProto:
    """A random RBF SVMClassifier over 4 features, 3 support vectors per class (an `extra` of None
    leaves the attribute out)."""
    pairs = classes * (classes - 1) // 2
    attrs: dict[str, Any] = {
        "classlabels_ints": [10 * c for c in range(classes)], "vectors_per_class": [3] * classes,
        "support_vectors": rng.normal(size=classes * 3 * 4).tolist(), "kernel_type": "RBF",
        "kernel_params": [0.3, 0.0, 3.0], "coefficients": rng.normal(size=(classes - 1) * classes * 3).tolist(),
        "rho": rng.normal(size=pairs).tolist(), "post_transform": transform}
    if probability:
        attrs |= {"prob_a": rng.uniform(-3, -1, pairs).tolist(), "prob_b": rng.normal(size=pairs).tolist()}
    width = classes if probability else (pairs if classes > 2 else 2)
    return ml_model("SVMClassifier", {"x": rng.normal(size=(20, 4)).astype(np.float32)},
                    {"label": (TensorProto.INT64, [20]), "scores": (TensorProto.FLOAT, [20, width])},
                    **{k: v for k, v in (attrs | extra).items() if v is not None})


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("probability", [True, False], ids=["probability", "decision"])
def test_svm_classifier_transforms_and_layouts(classes: int, transform: str, probability: bool) -> None:
    """ONNX Runtime's layouts: [-d, d] (NONE) or [1 - d, d] for a binary decision, the transform
    over the pairwise values or over the coupled probabilities, labels other than 0..C-1."""
    x = rng.normal(size=(20, 4)).astype(np.float32)
    assert_matches_ort(svm_classifier(classes, transform, probability), {"x": x})


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("probability", [True, False], ids=["probability", "decision"])
def test_svm_linear_kernel_folds_its_vectors(classes: int, probability: bool) -> None:
    """A LINEAR kernel's support vectors folded into one weight vector per pair while compiling (and an
    SVMRegressor's into one): ONNX Runtime's decision values, probabilities and labels, from a sum over vectors."""
    x = rng.normal(size=(20, 4)).astype(np.float32)
    assert_matches_ort(svm_classifier(classes, probability=probability, kernel_type="LINEAR"), {"x": x})
    regressor = ml_model("SVMRegressor", {"x": x}, {"y": (TensorProto.FLOAT, [20, 1])}, kernel_type="LINEAR",
                         support_vectors=rng.normal(size=5 * 4).tolist(), n_supports=5,
                         kernel_params=[0.1, 0.0, 3.0], coefficients=rng.normal(size=5).tolist(), rho=[0.4])
    assert_matches_ort(regressor, {"x": x})


def test_svm_classifier_int64_input() -> None:
    model = svm_classifier(3, probability=True)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    assert_matches_ort(model, {"x": rng.integers(-2, 3, size=(20, 4)).astype(np.int64)})


@pytest.mark.parametrize("extra,match", [
    ({"post_transform": "PROBIT"}, "PROBIT on a binary classifier"),
    ({"kernel_type": "POLY", "kernel_params": [0.3, 0.0, 2.5]}, "POLY degree of 2.5"),
    ({"rho": [0.0]}, "rho must have one value per pair"),
    ({"vectors_per_class": None, "coefficients": [0.0] * 12}, "liblinear form"),
    ({"support_vectors": [0.0] * 5}, "support_vectors has 5 values"),
])
def test_svm_classifier_refusals_name_the_problem(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(UnsupportedModel, match=match):
        convert_onnx(svm_classifier(2 if "PROBIT" in str(extra) else 3, **extra))


def categorical(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Three integer-coded categorical columns (3, 5 and 7 categories, codes not 0..n-1) and a label
    that depends on them."""
    codes = ([1, 4, 9], [-2, 0, 3, 5, 8], [10, 11, 12, 13, 14, 15, 16])
    columns = [rng.choice(np.asarray(c), size=rows) for c in codes]
    x = np.stack(columns, axis=1).astype(np.int64)
    return x, ((x[:, 0] == 4) ^ (x[:, 1] > 2) ^ (x[:, 2] % 3 == 0)).astype(np.int64)


def test_one_hot_encoder_pipeline_on_integer_categories() -> None:
    """OneHotEncoder (one per column, int64 categories) then a logistic regression; a category
    never seen in training (handle_unknown='ignore') is all zeros."""
    x, y = categorical(200)
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=500)).fit(x, y)
    onx = convert_sklearn(model, initial_types=[("input", Int64TensorType([None, 3]))],
                          options={id(model): {"zipmap": False}}, target_opset=TARGET_OPSET)
    assert "OneHotEncoder" in [n.op_type for n in onx.graph.node]
    test, _ = categorical(50)
    test[:5, 1] = 7  # unseen
    assert_matches_ort(onx, {"input": test}, max_batch=len(test))


@pytest.mark.parametrize("make", [lambda: LogisticRegression(max_iter=500),
                                  lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0)],
                         ids=["logistic", "hist_gradient_boosting"])
def test_column_transformer_scaling_numbers_and_encoding_integer_categories(make: Any) -> None:
    """A tabular pipeline as users write it: StandardScaler on the numeric columns, OneHotEncoder on
    the integer-coded ones (float input, cast to int64 by the exporter), then a classifier."""
    x = np.c_[rng.normal(size=(300, 2)), rng.choice([1, 4, 9], size=300),
              rng.choice([0, 2, 3, 5], size=300)].astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 2] == 4) ^ (x[:, 3] > 2)).astype(np.int64)
    columns = ColumnTransformer([("numbers", StandardScaler(), [0, 1]),
                                 ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [2, 3])])
    model = make_pipeline(columns, make()).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # skl2onnx's HistGradientBoosting converter's bools
        onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))],
                              options={id(model): {"zipmap": False}}, target_opset=TARGET_OPSET)
    assert {"Scaler", "OneHotEncoder"} <= {n.op_type for n in onx.graph.node}
    assert_matches_ort(onx, {"input": x}, max_batch=len(x))


def test_label_encoder_on_integer_labels() -> None:
    encoder = LabelEncoder().fit(np.asarray([30, 10, 20, 40, 10], dtype=np.int64))
    onx = convert_sklearn(encoder, initial_types=[("input", Int64TensorType([None]))], target_opset=TARGET_OPSET)
    assert [n.op_type for n in onx.graph.node] == ["LabelEncoder"]
    labels = np.asarray([10, 20, 30, 40, 50, -1], dtype=np.int64)  # 50 and -1: the default
    assert_matches_ort(onx, {"input": labels}, max_batch=len(labels))


def test_string_categories_are_refused_by_name() -> None:
    x = np.asarray([["red"], ["green"], ["blue"], ["green"]])
    model = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(x, [0, 1, 0, 1])
    onx = convert_sklearn(model, initial_types=[("input", StringTensorType([None, 1]))],
                          options={id(model): {"zipmap": False}}, target_opset=TARGET_OPSET)
    with pytest.raises(UnsupportedModel, match=r"OneHotEncoder\): string categories \(cats_strings\) .*no string"):
        convert_onnx(onx)
    mapper = ml_model("CategoryMapper", {"x": np.asarray(["a", "b"], dtype=object)},
                      {"y": (TensorProto.INT64, [2])}, cats_strings=["a", "b"], cats_int64s=[1, 2])
    with pytest.raises(UnsupportedModel, match=r"CategoryMapper is not supported; it maps strings .* before the model"):
        convert_onnx(mapper)
    encoder = ml_model("LabelEncoder", {"x": np.asarray([1, 2], dtype=np.int64)},
                       {"y": (TensorProto.STRING, [2])}, keys_int64s=[1, 2], values_strings=["a", "b"])
    with pytest.raises(UnsupportedModel, match="string keys or values"):
        convert_onnx(encoder)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("zeros", [1, 0])
def test_one_hot_encoder(dtype: type, zeros: int) -> None:
    """Floats are truncated to int64 before the lookup, as ONNX Runtime casts them."""
    x = rng.choice(np.asarray([-3, 0, 2, 5, 7]), size=(6, 2)).astype(dtype)
    if dtype in (np.float32, np.float64):
        x = x + np.asarray(rng.choice([0.0, 0.25, 0.75], size=x.shape), dtype=dtype) * np.sign(x)
    categories = [-3, 0, 2, 5, 7] if zeros == 0 else [7, 2, 11]

    def model(values: np.ndarray) -> onnx.ModelProto:
        return ml_model("OneHotEncoder", {"x": values}, {"y": (TensorProto.FLOAT, [6, 2, len(categories)])},
                        cats_int64s=categories, zeros=zeros)

    # ONNX Runtime has no int32 kernel: the same values as int64 are the reference
    want = ort_run(model(x.astype(np.int64) if dtype == np.int32 else x), {"x": x.astype(np.int64)
                                                                         if dtype == np.int32 else x})[0]
    np.testing.assert_array_equal(wasm_run(model(x), {"x": x})[0], want)


def test_one_hot_encoder_batches_a_vector_of_values() -> None:
    """[N] values become [N, categories]: the batch stays on axis 0 (a run-time batch up to 16)."""
    x = np.asarray([7, 2, 5, 11, 2], dtype=np.int64)
    model = ml_model("OneHotEncoder", {"x": x}, {"y": (TensorProto.FLOAT, [None, 3])}, batched=True,
                     cats_int64s=[7, 2, 11])
    assert_matches_ort(model, {"x": x}, max_batch=16)


def test_one_hot_encoder_unknown_category_with_zeros_0_traps() -> None:
    x = np.asarray([[1], [4]], dtype=np.int64)
    model = ml_model("OneHotEncoder", {"x": x}, {"y": (TensorProto.FLOAT, [2, 1, 2])}, cats_int64s=[1, 2], zeros=0)
    with pytest.raises(Exception, match=r"unreachable|trap"):
        WasmModel(convert_onnx(model).wasm).run({"x": x})
    with pytest.raises(UnsupportedModel, match=r"cats_int64s lists \[1\] more than once"):
        convert_onnx(ml_model("OneHotEncoder", {"x": x}, {"y": (TensorProto.FLOAT, [2, 1, 3])},
                              cats_int64s=[1, 2, 1]))


@pytest.mark.parametrize("keys,values,attrs", [
    (np.int64, np.int64, {}), (np.int64, np.float32, {"default_float": 0.5}), (np.float32, np.int64, {}),
    (np.float32, np.float32, {"default_float": -7.0}), (np.int64, np.int64, {"default_int64": 99})])
@pytest.mark.parametrize("opset", [2, 4])
def test_label_encoder(keys: type, values: type, attrs: dict[str, Any], opset: int) -> None:
    """Numbers to numbers, keys as lists (opset 2) or tensors (opset 4, where a NaN key matches NaN)."""
    key_list = np.asarray([3, -1, 8, 0, 5], dtype=keys)
    if keys == np.float32:
        key_list = np.asarray([3.5, -1.0, np.nan if opset == 4 else 2.5, 0.0, 5.25], dtype=np.float32)
    value_list = np.asarray([10, 20, 30, 40, 50], dtype=values)
    x = rng.choice(np.r_[key_list, np.asarray([7, 2, np.nan if keys == np.float32 else 1], dtype=keys)],
                   size=(4, 5)).astype(keys)
    names = {np.dtype(np.int64): "int64s", np.dtype(np.float32): "floats"}
    if opset == 4:
        tables = {"keys_tensor": onnx.numpy_helper.from_array(key_list),
                  "values_tensor": onnx.numpy_helper.from_array(value_list)}
        default = next(iter(attrs.values()), None)
        if default is not None:
            tables["default_tensor"] = onnx.numpy_helper.from_array(np.asarray([default], dtype=values))
    else:
        tables = {f"keys_{names[np.dtype(keys)]}": key_list.tolist(),
                  f"values_{names[np.dtype(values)]}": value_list.tolist()} | attrs
    model = ml_model("LabelEncoder", {"x": x}, {"y": (helper.np_dtype_to_tensor_dtype(np.dtype(values)), [4, 5])},
                     ml_opset=opset, **tables)
    assert_matches_ort(model, {"x": x})


def test_label_encoder_nan_key_in_a_list_is_refused() -> None:
    x = np.asarray([1.0, np.nan], dtype=np.float32)
    model = ml_model("LabelEncoder", {"x": x}, {"y": (TensorProto.INT64, [2])}, ml_opset=2,
                     keys_floats=[1.0, float("nan")], values_int64s=[1, 2])
    with pytest.raises(UnsupportedModel, match="NaN key in keys_floats"):
        convert_onnx(model)


GRADIENT_BOOSTING = [("xgboost", "XGBClassifier", "breast_cancer"), ("xgboost", "XGBClassifier", "iris"),
                     ("xgboost", "XGBRegressor", "diabetes"), ("lightgbm", "LGBMClassifier", "breast_cancer"),
                     ("lightgbm", "LGBMClassifier", "iris"), ("lightgbm", "LGBMRegressor", "diabetes")]


@pytest.mark.parametrize("library,estimator,dataset", GRADIENT_BOOSTING,
                         ids=[f"{e}-{d}" for _, e, d in GRADIENT_BOOSTING])
def test_xgboost_and_lightgbm_through_onnxmltools(library: str, estimator: str, dataset: str) -> None:
    """Boosted trees from the libraries themselves, converted by onnxmltools: the tree kernel gives
    ONNX Runtime's labels and scores (LightGBM's binary and multiclass post-processing included)."""
    module = pytest.importorskip(library)
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloatTensorType

    x_train, x_test, y_train, _ = split(dataset)
    model = getattr(module, estimator)(n_estimators=30, max_depth=5,
                                       **({"verbose": -1} if library == "lightgbm" else {})).fit(x_train, y_train)
    convert = onnxmltools.convert_lightgbm if library == "lightgbm" else onnxmltools.convert_xgboost
    options = {"zipmap": False} if library == "lightgbm" and estimator.endswith("Classifier") else {}
    onx = convert(model, initial_types=[("input", MLFloatTensorType([None, x_train.shape[1]]))], target_opset=15,
                  **options)
    assert_matches_ort(onx, {"input": x_test}, max_batch=len(x_test))


def test_lightgbm_zipmap_refusal_names_its_option() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloatTensorType

    x_train, _, y_train, _ = split("iris")
    model = lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(x_train, y_train)
    onx = onnxmltools.convert_lightgbm(model, initial_types=[("input", MLFloatTensorType([None, 4]))], target_opset=15)
    with pytest.raises(UnsupportedModel, match=r"ZipMap is not supported;.*convert_lightgbm takes zipmap=False"):
        convert_onnx(onx)


def test_zipmap_is_refused_with_advice() -> None:
    """ZipMap's sequence of maps has no tensor form: the refusal names the node, why, and the option."""
    x_train, _, y_train, _ = split("iris")
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=TARGET_OPSET)
    (zipmap,) = [n.name for n in onx.graph.node if n.op_type == "ZipMap"]
    with pytest.raises(UnsupportedModel, match=rf"node '{zipmap}': op ai.onnx.ml.ZipMap is not supported; its output "
                                               r"is a sequence of maps.*options=\{'zipmap': False\}"):
        convert_onnx(onx)


@pytest.mark.parametrize("make", [lambda: LogisticRegression(max_iter=1000), lambda: RandomForestClassifier(3),
                                  lambda: MLPClassifier((8,), max_iter=20)], ids=["linear", "trees", "mlp"])
def test_string_labels_are_refused_clearly(make: Any) -> None:
    x_train, _, y_train, _ = split("iris")
    model = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, np.array(["a", "b", "c"])[y_train])
    with pytest.raises(UnsupportedModel, match=r"string class labels .*train with integer labels"):
        convert_onnx(export(model, 4))


# ---------------------------------------------------------------- single ops

def ml_model(op: str, inputs: dict[str, np.ndarray], outputs: dict[str, tuple[int, list[int | None]]],
             constants: dict[str, np.ndarray] | None = None, batched: bool = False, ml_opset: int = ML_OPSET,
             **attrs: Any) -> onnx.ModelProto:
    """A one-node ai.onnx.ml model; outputs are declared since most ML ops have no shape inference.
    `batched` leaves the leading input dimension dynamic (the module's run-time batch)."""
    constants = constants or {}
    node = helper.make_node(op, list(inputs) + list(constants), list(outputs), domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                       [None, *v.shape[1:]] if batched else v.shape)
         for n, v in inputs.items()],
        [helper.make_tensor_value_info(n, elem, shape) for n, (elem, shape) in outputs.items()],
        [onnx.numpy_helper.from_array(v, n) for n, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15),
                                                    helper.make_opsetid("ai.onnx.ml", ml_opset)])


rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_per_test(request: pytest.FixtureRequest) -> None:
    """Each test draws the same data whatever the order or worker it runs in."""
    global rng
    rng = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()) + SEED_SALT)


GRID = np.arange(-2.0, 2.5, 0.5, dtype=np.float32)  # thresholds and inputs share it, so x == t happens


def grid_input(rows: int, features: int, nan_fraction: float = 0.1) -> np.ndarray:
    x = rng.choice(GRID, size=(rows, features)).astype(np.float32)
    x[rng.random(x.shape) < nan_fraction] = np.nan
    return x


def random_trees(trees: int, features: int, outputs: int, modes: list[str], depth: int = 4,
                 track_missing: bool | str = True, targets: list[int] | None = None, weights: str = "mixed",
                 leaf_outputs: str = "some") -> dict[str, Any]:
    """Random binary trees as TreeEnsemble* attributes (without the class_/target_ prefix); about
    30% of branches send NaN to their true child, or all of them with track_missing="all"."""
    columns: dict[str, list[Any]] = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes",
                                                      "truenodeids", "falsenodeids", "missing")}
    leaves: dict[str, list[Any]] = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    chosen = targets if targets is not None else list(range(outputs))
    for tree in range(trees):
        count = 0

        def grow(level: int, tree: int = tree) -> int:
            nonlocal count
            me = count
            count += 1
            branch = level < depth and (level < 2 or rng.random() < 0.7)
            for key, value in zip(("treeids", "nodeids", "featureids", "values", "modes", "missing"),
                                  (tree, me, int(rng.integers(features)), float(rng.choice(GRID)),
                                   str(rng.choice(modes)) if branch else "LEAF",
                                   int(track_missing == "all" or (track_missing and rng.random() < 0.3))),
                                  strict=True):
                columns[key].append(value)
            columns["truenodeids"].append(0)
            columns["falsenodeids"].append(0)
            if branch:
                at = len(columns["treeids"]) - 1
                columns["truenodeids"][at] = grow(level + 1)
                columns["falsenodeids"][at] = grow(level + 1)
            else:
                ids = chosen if leaf_outputs == "all" else [t for t in chosen if rng.random() < 0.6]
                for target in ids:
                    value = float(rng.normal()) if weights == "mixed" else float(rng.random())
                    for key, item in zip(("treeids", "nodeids", "ids", "weights"), (tree, me, target, value),
                                         strict=True):
                        leaves[key].append(item)
            return me

        grow(0)
    return {"nodes": columns, "leaves": leaves}


def tree_attrs(forest: dict[str, Any], prefix: str) -> dict[str, Any]:
    nodes, leaves = forest["nodes"], forest["leaves"]
    attrs = {f"nodes_{k}": v for k, v in nodes.items() if k != "missing"}
    attrs["nodes_missing_value_tracks_true"] = nodes["missing"]
    attrs.update({f"{prefix}_{k}": v for k, v in leaves.items()})
    return attrs


MIXED_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


@pytest.mark.parametrize("modes,track", [(["BRANCH_LEQ"], False), (["BRANCH_LT"], True), (["BRANCH_NEQ"], False),
                                         (MIXED_MODES, False), (MIXED_MODES, True), (["BRANCH_LEQ"], "all"),
                                         (["BRANCH_GT"], "all"), (["BRANCH_NEQ"], "all"), (["BRANCH_EQ"], "all")])
@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE", "MIN", "MAX"])
@pytest.mark.parametrize("targets", [1, 3])
def test_tree_regressor_modes_and_aggregates(modes: list[str], track: bool | str, aggregate: str, targets: int) -> None:
    """Every mode, NaN sent either way: one comparison for all branches (its complement, picking the
    false child, where every branch sends NaN to its true child, as LightGBM's do) or the per-node mask."""
    x = grid_input(40, 5)
    forest = random_trees(6, 5, targets, modes, track_missing=track)
    model = ml_model("TreeEnsembleRegressor", {"x": x}, {"y": (TensorProto.FLOAT, [40, targets])},
                     n_targets=targets, aggregate_function=aggregate, **tree_attrs(forest, "target"))
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("targets,base", [(1, []), (1, [0.25]), (3, []), (3, [0.5, -1.0, 2.0])])
def test_tree_regressor_transforms_and_base_values(transform: str, targets: int, base: list[float]) -> None:
    x = grid_input(30, 4)
    forest = random_trees(5, 4, targets, MIXED_MODES)
    if transform == "PROBIT":  # probit is defined on (0, 1)
        forest["leaves"]["weights"] = [float(rng.uniform(0.01, 0.15)) for _ in forest["leaves"]["weights"]]
        base = [0.05] * len(base)
    attrs = tree_attrs(forest, "target") | ({"base_values": base} if base else {})
    model = ml_model("TreeEnsembleRegressor", {"x": x}, {"y": (TensorProto.FLOAT, [None, targets])},
                     n_targets=targets, post_transform=transform, batched=True, **attrs)
    assert_matches_ort(model, {"x": x}, max_batch=len(x))


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("base", [[], [0.1, -0.2, 0.3, 0.0]])
@pytest.mark.parametrize("leaf_outputs", ["some", "all"])
def test_tree_classifier_multiclass(transform: str, base: list[float], leaf_outputs: str) -> None:
    x = grid_input(40, 6)
    forest = random_trees(8, 6, 4, MIXED_MODES, leaf_outputs=leaf_outputs)
    if transform == "PROBIT":
        forest["leaves"]["weights"] = [float(rng.uniform(0.01, 0.1)) for _ in forest["leaves"]["weights"]]
        base = [0.05] * len(base)
    attrs = tree_attrs(forest, "class") | ({"base_values": base} if base else {})
    model = ml_model("TreeEnsembleClassifier", {"x": x},
                     {"label": (TensorProto.INT64, [40]), "scores": (TensorProto.FLOAT, [40, 4])},
                     classlabels_int64s=[3, 5, 7, 11], post_transform=transform, **attrs)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("ids", [[0], [1], [0, 1]])
@pytest.mark.parametrize("base", [[], [0.3], [-0.2, 0.4]])
@pytest.mark.parametrize("weights", ["mixed", "positive"])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_tree_classifier_binary_layouts(ids: list[int], base: list[float], weights: str, transform: str) -> None:
    """The binary branch of ONNX Runtime's classifier: which class scored decides the layout."""
    x = grid_input(50, 4)
    # with both classes weighted and one base value, every leaf must score class 1 (else refused)
    forest = random_trees(4, 4, 2, MIXED_MODES, targets=ids, weights=weights,
                          leaf_outputs="all" if len(ids) == 2 and len(base) == 1 else "some")
    attrs = tree_attrs(forest, "class") | ({"base_values": base} if base else {})
    model = ml_model("TreeEnsembleClassifier", {"x": x},
                     {"label": (TensorProto.INT64, [None]), "scores": (TensorProto.FLOAT, [None, 2])},
                     classlabels_int64s=[4, 9], post_transform=transform, batched=True, **attrs)
    assert_matches_ort(model, {"x": x}, max_batch=len(x))


def test_tree_classifier_int64_input_and_probit_refusal() -> None:
    x = rng.integers(-2, 3, size=(20, 3)).astype(np.int64)
    forest = random_trees(3, 3, 3, ["BRANCH_LEQ"], track_missing=False)
    model = ml_model("TreeEnsembleClassifier", {"x": x},
                     {"label": (TensorProto.INT64, [20]), "scores": (TensorProto.FLOAT, [20, 3])},
                     classlabels_int64s=[0, 1, 2], **tree_attrs(forest, "class"))
    assert_matches_ort(model, {"x": x})
    binary = ml_model("TreeEnsembleClassifier", {"x": x},
                      {"label": (TensorProto.INT64, [20]), "scores": (TensorProto.FLOAT, [20, 2])},
                      classlabels_int64s=[0, 1], post_transform="PROBIT",
                      **tree_attrs(random_trees(2, 3, 2, ["BRANCH_LEQ"]), "class"))
    with pytest.raises(UnsupportedModel, match="PROBIT on a binary classifier"):
        convert_onnx(binary)


@pytest.mark.parametrize("op,outputs,base", [("TreeEnsembleRegressor", 3, [1.0]),
                                             ("TreeEnsembleClassifier", 4, [0.5, 0.5])])
def test_tree_base_values_of_the_wrong_length_are_refused(op: str, outputs: int, base: list[float]) -> None:
    """ONNX Runtime refuses these too (a binary classifier may have one base value)."""
    x = grid_input(3, 2)
    prefix = "target" if op == "TreeEnsembleRegressor" else "class"
    attrs = tree_attrs(random_trees(2, 2, outputs, ["BRANCH_LEQ"]), prefix) | {"base_values": base}
    attrs |= {"n_targets": outputs} if prefix == "target" else {"classlabels_int64s": list(range(outputs))}
    declared = {"y": (TensorProto.FLOAT, [3, outputs])} if prefix == "target" else {
        "label": (TensorProto.INT64, [3]), "scores": (TensorProto.FLOAT, [3, outputs])}
    with pytest.raises(UnsupportedModel, match="base_values must have"):
        convert_onnx(ml_model(op, {"x": x}, declared, **attrs))


def test_binary_classifier_whose_second_score_ort_leaves_unwritten_is_refused() -> None:
    x = grid_input(3, 2)
    forest = random_trees(2, 2, 2, ["BRANCH_LEQ"], leaf_outputs="some")
    forest["leaves"] = {"treeids": [0, 0], "nodeids": [forest["nodes"]["nodeids"][-1]] * 2, "ids": [0, 1],
                        "weights": [0.5, 0.25]}  # both classes weighted, most leaves score neither
    model = ml_model("TreeEnsembleClassifier", {"x": x},
                     {"label": (TensorProto.INT64, [3]), "scores": (TensorProto.FLOAT, [3, 2])},
                     classlabels_int64s=[0, 1], base_values=[0.1], **tree_attrs(forest, "class"))
    with pytest.raises(UnsupportedModel, match="second score unwritten"):
        convert_onnx(model)


def test_tree_with_a_cycle_is_refused() -> None:
    x = grid_input(2, 2)
    model = ml_model("TreeEnsembleRegressor", {"x": x}, {"y": (TensorProto.FLOAT, [2, 1])}, n_targets=1,
                     nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 1, 0],
                     nodes_values=[0.0, 0.0, 0.0], nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"],
                     nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 2, 0],
                     target_treeids=[0], target_nodeids=[2], target_ids=[0], target_weights=[1.0])
    with pytest.raises(UnsupportedModel, match="cycle"):
        convert_onnx(model)


def as_tree_ensemble(v3: dict[str, Any]) -> dict[str, Any]:
    """TreeEnsembleRegressor attributes (one weight per leaf) as opset 5 TreeEnsemble's: branches
    and leaves in arrays of their own, children indexing one or the other."""
    keys = list(zip(v3["nodes_treeids"], v3["nodes_nodeids"], strict=True))
    modes = v3["nodes_modes"]
    branches = [i for i, m in enumerate(modes) if m != "LEAF"]
    leaves = [i for i, m in enumerate(modes) if m == "LEAF"]
    branch_at = {keys[i]: k for k, i in enumerate(branches)}
    leaf_at = {keys[i]: k for k, i in enumerate(leaves)}
    weight = {(t, n): (target, w) for t, n, target, w in zip(v3["target_treeids"], v3["target_nodeids"],
                                                              v3["target_ids"], v3["target_weights"], strict=True)}
    names = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]

    def child(i: int, side: str) -> tuple[int, int]:
        key = (v3["nodes_treeids"][i], v3[f"nodes_{side}nodeids"][i])
        return (leaf_at[key], 1) if key in leaf_at else (branch_at[key], 0)

    true, false = [child(i, "true") for i in branches], [child(i, "false") for i in branches]
    return {
        "nodes_modes": onnx.numpy_helper.from_array(np.asarray([names.index(modes[i]) for i in branches], np.uint8)),
        "nodes_featureids": [v3["nodes_featureids"][i] for i in branches],
        "nodes_splits": onnx.numpy_helper.from_array(np.asarray([v3["nodes_values"][i] for i in branches],
                                                                np.float32)),
        "nodes_truenodeids": [c for c, _ in true], "nodes_trueleafs": [leaf for _, leaf in true],
        "nodes_falsenodeids": [c for c, _ in false], "nodes_falseleafs": [leaf for _, leaf in false],
        "leaf_targetids": [weight[keys[i]][0] for i in leaves],
        "leaf_weights": onnx.numpy_helper.from_array(np.asarray([weight[keys[i]][1] for i in leaves], np.float32)),
        "tree_roots": sorted({branch_at[k] for k in keys if k[1] == 0 and k in branch_at}),
    }


def test_tree_ensemble_from_a_fitted_forest() -> None:
    """A scikit-learn forest's TreeEnsembleRegressor rewritten as opset 5's TreeEnsemble gives ONNX
    Runtime's numbers, and the same numbers as the op it came from."""
    x_train, x_test, y_train, _ = split("diabetes")
    model = RandomForestRegressor(20, max_depth=8, random_state=0).fit(x_train, y_train)
    onx = export(model, x_train.shape[1])
    (tree,) = [n for n in onx.graph.node if n.op_type == "TreeEnsembleRegressor"]
    v3 = {a.name: helper.get_attribute_value(a) for a in tree.attribute}
    v3["nodes_modes"] = [m.decode() for m in v3["nodes_modes"]]
    v5 = ml_model("TreeEnsemble", {"input": x_test}, {"y": (TensorProto.FLOAT, [len(x_test), 1])}, ml_opset=5,
                  n_targets=1, aggregate_function=1, **as_tree_ensemble(v3))
    assert_matches_ort(v5, {"input": x_test})
    np.testing.assert_allclose(wasm_run(v5, {"input": x_test})[0], ort_run(onx, {"input": x_test})[0],
                               rtol=1e-5, atol=1e-4)


def random_v5_trees(trees: int, features: int, targets: int, depth: int = 4) -> dict[str, Any]:
    """Random opset 5 trees over GRID with every mode, set membership included (sets of 1 to 3 of
    GRID's whole values 0, 1, 2: ONNX Runtime refuses other values and answers differently from
    ONNX's reference for negative ones), each leaf weighting one random target."""
    nodes: dict[str, list[Any]] = {k: [] for k in ("modes", "featureids", "splits", "truenodeids", "trueleafs",
                                                   "falsenodeids", "falseleafs", "missing")}
    leaf_targets: list[int] = []
    leaf_weights: list[float] = []
    members: list[float] = []
    roots = []

    def grow(level: int) -> tuple[int, int]:
        if level >= depth or (level >= 2 and rng.random() < 0.3):
            leaf_targets.append(int(rng.integers(targets)))
            leaf_weights.append(float(rng.normal()))
            return len(leaf_targets) - 1, 1
        me = len(nodes["modes"])
        mode = int(rng.integers(7))
        for key, value in (("modes", mode), ("featureids", int(rng.integers(features))),
                           ("splits", float(rng.choice(GRID))), ("missing", int(rng.random() < 0.3))):
            nodes[key].append(value)
        if mode == 6:
            members.extend([*rng.choice([0.0, 1.0, 2.0], size=int(rng.integers(1, 4)), replace=False).tolist(),
                            float("nan")])
        for side in ("true", "false"):
            nodes[f"{side}nodeids"].append(0)
            nodes[f"{side}leafs"].append(0)
        for side in ("true", "false"):
            index, leaf = grow(level + 1)
            nodes[f"{side}nodeids"][me], nodes[f"{side}leafs"][me] = index, leaf
        return me, 0

    for _ in range(trees):
        roots.append(grow(0)[0])
    return {"nodes_modes": onnx.numpy_helper.from_array(np.asarray(nodes["modes"], np.uint8)),
            "nodes_splits": onnx.numpy_helper.from_array(np.asarray(nodes["splits"], np.float32)),
            "nodes_missing_value_tracks_true": nodes["missing"],
            **{f"nodes_{k}": nodes[k] for k in ("featureids", "truenodeids", "trueleafs", "falsenodeids",
                                                 "falseleafs")},
            "membership_values": onnx.numpy_helper.from_array(np.asarray(members, np.float32)),
            "leaf_targetids": leaf_targets,
            "leaf_weights": onnx.numpy_helper.from_array(np.asarray(leaf_weights, np.float32)),
            "tree_roots": roots}


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("targets,transform", [(1, 0), (3, 0), (3, 1), (3, 2), (3, 3)])
def test_tree_ensemble_set_membership_modes_and_aggregates(aggregate: int, targets: int, transform: int) -> None:
    """post_transform follows ONNX's numbering (1 SOFTMAX, 2 LOGISTIC); ONNX Runtime reads 1 as
    LOGISTIC and 2 as SOFTMAX (its own enum's order), so its answer for the other number is the reference."""
    x = grid_input(40, 5)
    trees = random_v5_trees(6, 5, targets)

    def model(post_transform: int) -> onnx.ModelProto:
        return ml_model("TreeEnsemble", {"x": x}, {"y": (TensorProto.FLOAT, [40, targets])}, ml_opset=5,
                        n_targets=targets, aggregate_function=aggregate, post_transform=post_transform, **trees)

    want = ort_run(model({1: 2, 2: 1}.get(transform, transform)), {"x": x})[0]
    np.testing.assert_allclose(wasm_run(model(transform), {"x": x})[0], want, rtol=1e-4, atol=1e-5)


def test_tree_ensemble_in_float64() -> None:
    """A float64 TreeEnsemble (splits, weights, input and output) runs in float32 and widens its
    scores: on values float32 holds exactly, ONNX Runtime's float64 answer within float32 rounding."""
    x = grid_input(40, 5).astype(np.float64)
    trees = random_v5_trees(6, 5, 2)
    for name in ("nodes_splits", "leaf_weights", "membership_values"):
        trees[name] = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(trees[name]).astype(np.float64))
    model = ml_model("TreeEnsemble", {"x": x}, {"y": (TensorProto.DOUBLE, [40, 2])}, ml_opset=5, n_targets=2,
                     **trees)
    got, want = wasm_run(model, {"x": x})[0], ort_run(model, {"x": x})[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("change,match", [
    ({"tree_roots": [99]}, "tree_roots must be non-empty node indices"),
    ({"membership_values": onnx.numpy_helper.from_array(np.asarray([], np.float32))}, "no values in membership"),
    ({"nodes_truenodeids": [0, 0]}, "cycle through node 0"),
])
def test_tree_ensemble_refusals_name_the_problem(change: dict[str, Any], match: str) -> None:
    attrs = {"nodes_modes": onnx.numpy_helper.from_array(np.asarray([6, 0], np.uint8)),
             "nodes_splits": onnx.numpy_helper.from_array(np.asarray([0.0, 1.0], np.float32)),
             "nodes_featureids": [0, 1], "nodes_truenodeids": [1, 0], "nodes_trueleafs": [0, 1],
             "nodes_falsenodeids": [1, 2], "nodes_falseleafs": [1, 1],
             "membership_values": onnx.numpy_helper.from_array(np.asarray([1.0, 2.0, np.nan], np.float32)),
             "leaf_targetids": [0, 0, 0], "tree_roots": [0],
             "leaf_weights": onnx.numpy_helper.from_array(np.asarray([1.0, 2.0, 3.0], np.float32))}
    x = grid_input(3, 2)
    model = ml_model("TreeEnsemble", {"x": x}, {"y": (TensorProto.FLOAT, [3, 1])}, ml_opset=5, n_targets=1,
                     **(attrs | change))
    with pytest.raises(UnsupportedModel, match=match):
        convert_onnx(model)


@pytest.mark.parametrize("classes,labels", [(3, [2, 4, 8]), (1, [5, 6]), (1, [])])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64])
def test_linear_classifier(classes: int, labels: list[int], transform: str, dtype: type) -> None:
    x = (rng.normal(size=(25, 6)) * 2).astype(dtype)
    coefficients = rng.normal(size=classes * 6).astype(np.float32) * (0.05 if transform == "PROBIT" else 1)
    intercepts = (rng.uniform(0.3, 0.6, classes) if transform == "PROBIT" else rng.normal(size=classes))
    width = 2 if classes == 1 and len(labels) == 2 else classes
    model = ml_model("LinearClassifier", {"x": x},
                     {"label": (TensorProto.INT64, [None]), "scores": (TensorProto.FLOAT, [None, width])},
                     coefficients=coefficients.tolist(), intercepts=intercepts.tolist(), post_transform=transform,
                     batched=True, **({"classlabels_ints": labels} if labels else {}))
    if transform == "PROBIT" and len(labels) == 2:  # ONNX Runtime leaves half of the scores unwritten
        with pytest.raises(UnsupportedModel, match="PROBIT"):
            convert_onnx(model, max_batch=len(x))
        return
    # PROBIT's closed-form erfinv takes log((1 - y)(1 + y)), which cancels near p = 0.5: there the
    # module's float32 log and ONNX Runtime's differ by up to 2e-5 (each ~1e-5 from the exact value)
    assert_matches_ort(model, {"x": x}, max_batch=len(x), atol=2e-5 if transform == "PROBIT" else 1e-5)


@pytest.mark.parametrize("features", [3, 8, 31])
@pytest.mark.parametrize("classes", [2, 16, 17])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_linear_classifier_row_dots(features: int, classes: int, transform: str) -> None:
    """The per-row dot products (up to 16 classes; 17 take the GEMM): no whole group of four features, no
    leftover ones, both; 7 rows, so the scores transformed four lanes at a time end in a partial vector. A NaN
    in a row's last feature, or its first, stays in that row, as in ONNX Runtime's."""
    x = rng.normal(size=(7, features)).astype(np.float32)
    x[2, -1] = np.nan
    x[5, 0] = np.nan
    model = ml_model("LinearClassifier", {"x": x},
                     {"label": (TensorProto.INT64, [7]), "scores": (TensorProto.FLOAT, [7, classes])},
                     coefficients=rng.normal(size=classes * features).tolist(),
                     intercepts=rng.normal(size=classes).tolist(), classlabels_ints=list(range(10, 10 + classes)),
                     post_transform=transform)
    want = ort_run(model, {"x": x})
    got = wasm_run(model, {"x": x})
    finite = np.isfinite(x).all(axis=1)
    np.testing.assert_array_equal(got[0][finite], want[0][finite])  # a NaN row's label is ONNX Runtime's own pick
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
    assert np.isnan(got[1][~finite]).all() and not np.isnan(got[1][finite]).any()


@pytest.mark.parametrize("targets,intercepts", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
def test_linear_regressor(targets: int, intercepts: bool, transform: str) -> None:
    x = rng.normal(size=(12, 5)).astype(np.float32)
    scale = 0.05 if transform == "PROBIT" else 1.0
    attrs: dict[str, Any] = {"coefficients": (rng.normal(size=targets * 5) * scale).tolist(), "targets": targets,
                             "post_transform": transform}
    if intercepts:
        attrs["intercepts"] = rng.uniform(0.3, 0.6, targets).tolist()
    model = ml_model("LinearRegressor", {"x": x}, {"y": (TensorProto.FLOAT, [12, targets])}, **attrs)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_normalizer(norm: str, dtype: type) -> None:
    x = (rng.normal(size=(9, 7)) * 3).astype(dtype)
    x[2] = 0  # a zero row is copied as it is
    if dtype == np.float32:
        x[4] = -np.abs(x[4])  # MAX of a negative row
    model = ml_model("Normalizer", {"x": x}, {"y": (TensorProto.FLOAT, [9, 7])}, norm=norm)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("shape,per_feature", [((6, 5), True), ((6, 5), False), ((5,), True), ((2, 3, 4), True)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_scaler(shape: tuple[int, ...], per_feature: bool, dtype: type) -> None:
    x = (rng.normal(size=shape) * 4).astype(dtype)
    stride = shape[0] if len(shape) == 1 else shape[1]
    count = stride if per_feature else 1
    model = ml_model("Scaler", {"x": x}, {"y": (TensorProto.FLOAT, list(shape))},
                     offset=rng.normal(size=count).tolist(), scale=rng.uniform(0.5, 2, count).tolist())
    assert_matches_ort(model, {"x": x})


def test_binarizer() -> None:
    x = rng.choice(GRID, size=(3, 7)).astype(np.float32)
    for attrs in ({}, {"threshold": 0.5}):
        model = ml_model("Binarizer", {"x": x}, {"y": (TensorProto.FLOAT, [3, 7])}, **attrs)
        assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("replaced", [0.0, float("nan"), 1.5])
@pytest.mark.parametrize("per_feature", [True, False])
def test_imputer_float(replaced: float, per_feature: bool) -> None:
    x = grid_input(6, 5, nan_fraction=0.3)
    values = rng.normal(size=5 if per_feature else 1).tolist()
    model = ml_model("Imputer", {"x": x}, {"y": (TensorProto.FLOAT, [6, 5])}, imputed_value_floats=values,
                     replaced_value_float=replaced)
    assert_matches_ort(model, {"x": x})


def test_imputer_int64() -> None:
    x = rng.integers(-3, 3, size=(4, 6)).astype(np.int64)
    model = ml_model("Imputer", {"x": x}, {"y": (TensorProto.INT64, [4, 6])},
                     imputed_value_int64s=list(range(10, 16)), replaced_value_int64=-1)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.float64])
@pytest.mark.parametrize("shape,indices", [((4, 6), [5, 0, 2]), ((6,), [3]), ((2, 3, 5), [4, 4, 1, 0])])
def test_array_feature_extractor(dtype: type, shape: tuple[int, ...], indices: list[int]) -> None:
    x = (rng.normal(size=shape) * 10).astype(dtype)
    y = np.asarray(indices, dtype=np.int64)
    out = [1, len(indices)] if len(shape) == 1 else [*shape[:-1], len(indices)]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    runtime = ml_model("ArrayFeatureExtractor", {"x": x, "y": y}, {"z": (elem, out)})
    assert_matches_ort(runtime, {"x": x, "y": y})
    constant = ml_model("ArrayFeatureExtractor", {"x": x}, {"z": (elem, out)}, constants={"y": y})
    assert_matches_ort(constant, {"x": x})


def test_array_feature_extractor_out_of_range_traps() -> None:
    x = rng.normal(size=(2, 3)).astype(np.float32)
    y = np.asarray([3], dtype=np.int64)
    model = ml_model("ArrayFeatureExtractor", {"x": x, "y": y}, {"z": (TensorProto.FLOAT, [2, 1])})
    module = WasmModel(convert_onnx(model).wasm)
    with pytest.raises(Exception, match=r"unreachable|trap"):
        module.run({"x": x, "y": y})
    with pytest.raises(UnsupportedModel, match="out of range"):
        convert_onnx(ml_model("ArrayFeatureExtractor", {"x": x}, {"z": (TensorProto.FLOAT, [2, 1])},
                              constants={"y": y}))
