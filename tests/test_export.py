"""ONNX export: the exported graph, run by onnxruntime, gives score_samples."""

import copy
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError

from skgeoad import (
    ADGANDetector,
    GeometricTransformDetector,
    IterativeClusterAEDetector,
    SubClusterDetector,
    export_onnx,
)
from skgeoad.export import OUTPUT_NAMES, scoring_module

#: Rows scored in the comparisons (batch > 1); the first few also one at a time.
N_SCORED = 120
N_SINGLE = 4

# Tiny fits hold out few samples to set the threshold, and say so.
pytestmark = pytest.mark.filterwarnings("ignore:Only \\d+ samples are held out:UserWarning")


@pytest.fixture(scope="module")
def rows(digits):
    """Digits as the float32 rows a server would send: (n, 64), every class."""
    X_train, y_train, X_test, _ = digits
    return X_train.reshape(len(X_train), -1).astype(np.float32), y_train, X_test.reshape(len(X_test), -1).astype(np.float32)


@pytest.fixture(scope="module")
def tabular():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)) * [1, 10, 0.1, 1, 5, 1] + [0, 100, -3, 0, 0, 7]
    labels = (X[:, 0] > 0).astype(int)
    return X.astype(np.float32), labels


def _fit(kind, rows, tabular):
    """A tiny fitted detector of each exported kind (seconds each on a CPU)."""
    X, y, _ = rows
    # Float32, as the graph computes: with bf16 (the default where the CPU has it) the
    # scores differ by its rounding (test_mixed_precision_models_export_in_float32...).
    quick = dict(device="cpu", random_state=0, mixed_precision=False)
    if kind == "geom":
        # The 72 transformations; few images, as each is 72 network inputs.
        return GeometricTransformDetector(transformations="all", widen_factor=1, epochs=1, **quick).fit(X[y == 0][:24])
    if kind == "geom_tabular":
        return GeometricTransformDetector(n_affine_transforms=8, affine_dim=4, epochs=2, **quick).fit(tabular[0])
    if kind == "icae":
        return IterativeClusterAEDetector(epochs=2, hidden_layer_sizes=(32, 8), **quick).fit(X[:150])
    if kind == "icae_conv":
        return IterativeClusterAEDetector(epochs=2, network="conv", hidden_layer_sizes=(8,), **quick).fit(X[:150])
    if kind == "icae_geometric":
        return IterativeClusterAEDetector(network="geometric", widen_factor=1, epochs=2, **quick).fit(X[:60])
    if kind == "icae_tabular":
        return IterativeClusterAEDetector(epochs=2, hidden_layer_sizes=(8, 3), **quick).fit(tabular[0])
    if kind == "subcluster":
        normal = y < 3
        return SubClusterDetector(epochs=2, **quick).fit(X[normal], cluster_labels=y[normal])
    if kind == "subcluster_rotations":
        normal = y < 3
        return SubClusterDetector(epochs=1, transformations="rotations", **quick).fit(
            X[normal], cluster_labels=y[normal]
        )
    if kind == "subcluster_single":
        return SubClusterDetector(n_clusters=1, **quick).fit(X[y == 0])
    if kind == "subcluster_tabular":
        return SubClusterDetector(epochs=2, **quick).fit(tabular[0], cluster_labels=tabular[1])
    if kind == "adgan":
        return ADGANDetector(latent_dim=8, epochs=2, n_seeds=4, search="latent", **quick).fit(X[y == 0][:60])
    if kind == "adgan_tabular":
        return ADGANDetector(latent_dim=4, epochs=2, n_seeds=4, search="latent", **quick).fit(tabular[0])
    raise ValueError(kind)


CASES = [
    ("geom", {"score_type": "dirichlet"}),
    ("geom", {"score_type": "simplified"}),
    ("geom", {"score_type": "knn"}),
    ("geom", {"score_type": "combined"}),
    ("geom_tabular", {"score_type": "dirichlet"}),
    ("geom_tabular", {"score_type": "simplified"}),
    ("geom_tabular", {"score_type": "knn"}),
    ("geom_tabular", {"score_type": "combined"}),
    ("icae", {"score_type": "cosine"}),
    ("icae", {"score_type": "mse"}),
    ("icae_conv", {"score_type": "cosine"}),
    ("icae_conv", {"score_type": "mse"}),
    ("icae_tabular", {"score_type": "auto"}),
    ("icae_geometric", {"score_type": "knn"}),
    ("subcluster", {"score_type": "msp"}),
    ("subcluster", {"score_type": "kl"}),
    ("subcluster", {"score_type": "knn"}),
    ("subcluster", {"score_type": "knn", "metric": "euclidean"}),
    ("subcluster", {"score_type": "odin"}),
    ("subcluster_rotations", {"score_type": "msp"}),
    ("subcluster_rotations", {"score_type": "kl"}),
    ("subcluster_rotations", {"score_type": "knn"}),
    ("subcluster_rotations", {"score_type": "odin"}),
    ("subcluster_single", {"score_type": "odin"}),  # one sub-cluster: every rule is Euclidean k-NN
    ("subcluster_tabular", {"score_type": "msp"}),
    ("subcluster_tabular", {"score_type": "knn"}),
    ("subcluster_tabular", {"score_type": "odin"}),
    ("adgan", {"search": "latent", "score_type": "combined"}),
    ("adgan", {"search": "latent", "score_type": "reconstruction"}),
    ("adgan", {"search": "latent", "score_type": "critic"}),
    ("adgan", {"search": "latent", "score_type": "combined_two_sided"}),
    ("adgan", {"search": "joint", "score_type": "critic"}),  # no search to export
    ("adgan_tabular", {"search": "latent", "score_type": "combined"}),
]


@pytest.fixture(scope="module")
def fitted(rows, tabular):
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = _fit(kind, rows, tabular)
        return cache[kind]

    return get


def _new_rows(kind, rows, tabular):
    if kind.endswith("tabular"):
        return np.random.default_rng(1).normal(size=(N_SCORED, 6)).astype(np.float32) * 3 + tabular[0].mean(0)
    # GEOM scores 72 network inputs per row.
    return rows[2][: N_SCORED // 3 if kind == "geom" else N_SCORED]


def _assert_same_order(scores, expected, tie=1e-6):
    """The same ranking, but for pairs of rows whose scores tie to ``tie`` relative (their
    order is the rounding's)."""
    swapped = np.sign(scores[:, None] - scores[None]) != np.sign(expected[:, None] - expected[None])
    gaps = np.abs(expected[:, None] - expected[None])[swapped]
    assert not len(gaps) or gaps.max() <= tie * np.abs(expected).max(), f"{len(gaps) // 2} pairs swapped"


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("kind, params", CASES, ids=[f"{k}-{'-'.join(p.values())}" for k, p in CASES])
def test_onnxruntime_reproduces_score_samples(kind, params, fitted, rows, tabular, tmp_path):
    detector = fitted(kind).set_params(**params)
    X = _new_rows(kind, rows, tabular)
    path = tmp_path / "model.onnx"
    export_onnx(detector, path)
    session = _session(path)
    expected = detector.score_samples(X)

    scores, decision, labels = session.run(None, {"X": X})
    assert scores.shape == (len(X),) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)
    # ADGAN's Adam steps divide each gradient by its own magnitude, which amplifies rounding:
    # its scores agree to ~1e-4 relative (5.6e-5 in benchmarks/onnx_export.py), and pairs
    # closer than that may swap.
    _assert_same_order(scores, expected, tie=1e-4 if kind.startswith("adgan") else 1e-6)
    # decision_function is score_samples - offset_ of the rule, as in the detector.
    np.testing.assert_allclose(decision, scores - detector._offset(), rtol=0, atol=1e-9)
    assert labels.dtype == np.int64 and set(np.unique(labels)) <= {-1, 1}
    # Labels agree except where the decision is within rounding of 0.
    clear = np.abs(expected - detector._offset()) > 1e-4 * np.abs(expected).max()
    assert np.array_equal(labels[clear], detector.predict(X)[clear])

    # The batch axis is dynamic: one row at a time gives the same scores.
    single = np.concatenate([session.run(["score_samples"], {"X": X[i : i + 1]})[0] for i in range(N_SINGLE)])
    np.testing.assert_allclose(single, expected[:N_SINGLE], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("score_type", ["critic", "combined"])
def test_adgan_graph_scores_the_critic_with_its_orientation(fitted, rows, tmp_path, score_type):
    # A critic found to rank rotated normal images high is scored negated (critic_orientation_);
    # the graph must negate it too.
    detector = copy.deepcopy(fitted("adgan")).set_params(search="latent", score_type=score_type)
    detector.critic_orientation_ = -detector.critic_orientation_
    X = _new_rows("adgan", rows, None)
    export_onnx(detector, tmp_path / "model.onnx")
    scores = _session(tmp_path / "model.onnx").run(["score_samples"], {"X": X})[0]
    np.testing.assert_allclose(scores, detector.score_samples(X), rtol=1e-4, atol=1e-6)


def test_tabular_graphs_keep_float64_constants(fitted, tabular, tmp_path):
    # The KL score of well-spread softmaxes is tiny (~1e-5): a float32 constant in the float64
    # graph (log of the number of sub-clusters) shifted it by 2e-8, 2e-3 of its value.
    detector = fitted("subcluster_tabular").set_params(score_type="kl")
    X = _new_rows("subcluster_tabular", None, tabular)
    export_onnx(detector, tmp_path / "model.onnx")
    scores = _session(tmp_path / "model.onnx").run(["score_samples"], {"X": X})[0]
    np.testing.assert_allclose(scores, detector.score_samples(X), rtol=1e-6, atol=0)


def test_the_graph_has_a_dynamic_batch_axis_and_says_what_it_scores(fitted, tmp_path):
    detector = fitted("subcluster").set_params(score_type="kl")
    model = export_onnx(detector, tmp_path / "model.onnx")
    assert model == onnx.load(tmp_path / "model.onnx")
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "X" and graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims[0].dim_param and not dims[0].dim_value and dims[1].dim_value == 64
    assert [output.name for output in model.graph.output] == list(OUTPUT_NAMES)
    assert model.opset_import[0].version == 18
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["skgeoad.detector"] == "SubClusterDetector"
    assert metadata["skgeoad.score_type"] == "kl"
    assert float(metadata["skgeoad.offset"]) == detector.offsets_["kl"]
    assert metadata["skgeoad.image_shape"] == "8x8x1"
    # onnxruntime reads the same metadata back.
    assert _session(tmp_path / "model.onnx").get_modelmeta().custom_metadata_map == metadata


def test_the_export_follows_the_current_score_type(fitted, rows, tmp_path):
    detector = fitted("icae")
    X = rows[2][:20]
    exported = {}
    for rule in ("cosine", "mse"):
        export_onnx(detector.set_params(score_type=rule), tmp_path / f"{rule}.onnx")
        exported[rule] = _session(tmp_path / f"{rule}.onnx").run(None, {"X": X})
        np.testing.assert_allclose(exported[rule][0], detector.score_samples(X), rtol=1e-4)
        assert np.allclose(exported[rule][0] - exported[rule][1], detector.offsets_[rule])
    assert not np.allclose(exported["cosine"][0], exported["mse"][0])
    detector.set_params(score_type="auto")


def test_a_rule_the_fitted_model_does_not_give_is_refused_as_score_samples_refuses_it(fitted):
    for kind, rule in (("icae", "knn"), ("icae_geometric", "mse")):
        detector = fitted(kind)
        detector.set_params(score_type=rule)
        try:
            with pytest.raises(ValueError, match=f"score_type={rule!r} is not a score of"):
                scoring_module(detector)
        finally:
            detector.set_params(score_type="auto")


def test_mixed_precision_models_export_in_float32_and_are_left_unchanged(rows, tmp_path):
    X, y, X_new = rows
    detector = SubClusterDetector(epochs=2, device="cpu", mixed_precision=True, random_state=0)
    detector.fit(X[y < 3], cluster_labels=y[y < 3])
    before = detector.score_samples(X_new[:50])
    parameters = {name: p.clone() for name, p in detector.network_.named_parameters()}
    export_onnx(detector, tmp_path / "model.onnx")
    # The detector still scores in bf16, with the same network on the same device.
    assert detector.mixed_precision_ and detector.device_ == torch.device("cpu")
    assert all(torch.equal(parameters[name], p) for name, p in detector.network_.named_parameters())
    np.testing.assert_array_equal(detector.score_samples(X_new[:50]), before)
    # The graph computes in float32: it reproduces the float32 scores, not the bf16 ones.
    full = copy.deepcopy(detector)
    full.mixed_precision_ = False
    scores = _session(tmp_path / "model.onnx").run(["score_samples"], {"X": X_new[:50]})[0]
    np.testing.assert_allclose(scores, full.score_samples(X_new[:50]), rtol=1e-4, atol=1e-6)


def test_scoring_module_is_the_same_score_in_torch(fitted, rows):
    detector = fitted("icae_conv").set_params(score_type="cosine")
    module = scoring_module(detector)
    assert not module.training and all(p.device.type == "cpu" for p in module.parameters())
    X = rows[2][:30]
    with torch.no_grad():
        scores = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(scores, detector.score_samples(X), rtol=1e-6, atol=1e-7)


def test_odin_exports_its_input_gradient(fitted, rows, tmp_path):
    """ODIN's perturbation needs the gradient of the loss with respect to the input: the
    graph holds that backward pass as operators (transposed convolutions, unpooling)."""
    detector = fitted("subcluster").set_params(score_type="odin")
    try:
        model = export_onnx(detector, tmp_path / "model.onnx")
        operators = {node.op_type for node in model.graph.node}
        assert "ConvTranspose" in operators
        # The scores react to epsilon: without the perturbation they would be plain MSP at T.
        X = rows[2][:40]
        scores = _session(tmp_path / "model.onnx").run(["score_samples"], {"X": X})[0]
        export_onnx(detector.set_params(epsilon=0.0), tmp_path / "plain.onnx")
        plain = _session(tmp_path / "plain.onnx").run(["score_samples"], {"X": X})[0]
        # The step makes the predicted sub-cluster more likely (to first order).
        assert np.mean(scores > plain) > 0.9
        np.testing.assert_allclose(plain, detector.score_samples(X), rtol=1e-6)
    finally:
        detector.set_params(score_type="msp", epsilon=0.0014)


def test_adgan_joint_search_is_refused_with_the_reason_and_the_alternative(rows, tmp_path):
    X, y, _ = rows
    detector = ADGANDetector(latent_dim=4, epochs=1, n_seeds=2, n_search_steps=1, device="cpu", random_state=0)
    detector.fit(X[y == 0][:30])
    assert detector.search == "joint"  # the default
    with pytest.raises(ValueError, match="search='joint'.*own copy of the generator.*search='latent'.*'critic'"):
        export_onnx(detector, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_unfitted_detectors_and_other_estimators_are_refused(rows, tmp_path):
    with pytest.raises(NotFittedError):
        export_onnx(SubClusterDetector(), tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="Only skgeoad's detectors.*skl2onnx"):
        export_onnx(IsolationForest().fit(rows[0][:20]), tmp_path / "model.onnx")


def test_a_score_type_set_after_fit_is_validated(fitted, tmp_path):
    detector = fitted("icae")
    detector.score_type = "nonsense"
    try:
        with pytest.raises(ValueError, match="score_type"):
            export_onnx(detector, tmp_path / "model.onnx")
    finally:
        detector.score_type = "auto"


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_a_missing_exporter_package_names_the_extra(package, fitted, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    with pytest.raises(ImportError, match=rf"needs {package}.*skgeoad\[export\]"):
        export_onnx(fitted("icae"), tmp_path / "model.onnx")
