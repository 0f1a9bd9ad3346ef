"""skgeoad.save / skgeoad.load: exact round trips, every fitted attribute kept, refusals, devices."""

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError

from skgeoad import (
    ADGANDetector,
    GeometricTransformDetector,
    IterativeClusterAEDetector,
    SubClusterDetector,
    load,
    save,
)
from skgeoad._torch import use_mixed_precision
from skgeoad.persistence import FORMAT_VERSION, ModelFileError, SavedVersionWarning

DATA = Path(__file__).parent / "data"

#: Quick settings per detector, and the scoring settings to switch between after
#: fit: the default first, then other rules (ADGAN's, and its other search).
DETECTORS = {
    "geometric": (
        GeometricTransformDetector,
        dict(transformations="rotations", widen_factor=1, epochs=2),
        [{"score_type": "dirichlet"}, {"score_type": "simplified"}],
    ),
    "subcluster": (
        SubClusterDetector,
        dict(epochs=2),
        [{"score_type": rule} for rule in ("msp", "odin", "kl", "knn")],
    ),
    "icae": (
        IterativeClusterAEDetector,
        dict(epochs=20, hidden_layer_sizes=(32, 8)),
        [{"score_type": "auto"}, {"score_type": "mse"}],
    ),
    "adgan": (
        ADGANDetector,
        dict(latent_dim=8, epochs=3, n_seeds=2, n_search_steps=2),
        [{"search": "joint"}, {"search": "latent"}, {"score_type": "critic"}, {"score_type": "combined"}],
    ),
}

#: Other architectures: tabular rows (affine maps, MLPs in float64, ADGAN's MLP
#: critic; the automatic latent size), a single sub-cluster (no network), a Wide ResNet,
#: a conv autoencoder.
VARIANTS = {
    "geometric-tabular": ("geometric", dict(image_shape="tabular", n_affine_transforms=4, affine_dim=4)),
    "adgan-tabular": ("adgan", dict(image_shape="tabular", hidden_layer_sizes=(8,))),
    "adgan-auto-latent": ("adgan", dict(latent_dim="auto")),
    "subcluster-one-cluster": ("subcluster", dict(n_clusters=1)),
    "subcluster-wrn": ("subcluster", dict(network="wrn", depth=4, widen_factor=1, epochs=1)),
    "icae-conv": ("icae", dict(network="conv", epochs=10)),
    "icae-geometric": ("icae", dict(network="geometric", transformations="rotations", widen_factor=1, epochs=2)),
}


def make(name, **params):
    cls, quick, _ = DETECTORS[name]
    return cls(**{**quick, "device": "cpu", "random_state": 0, **params})


@pytest.fixture(scope="module")
def data(digits):
    """90 zeros to fit on, 30 test rows of mixed digits."""
    X_train, y_train, X_test, _ = digits
    return X_train[y_train == 0][:90].reshape(-1, 64), X_test[:30].reshape(-1, 64)


@pytest.fixture(scope="module")
def fitted(data):
    X_train, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few held-out samples
        detectors = {name: make(name).fit(X_train) for name in DETECTORS}
        for variant, (name, params) in VARIANTS.items():
            detectors[variant] = make(name, **params).fit(X_train)
    return detectors


def round_trip(detector, **load_args):
    buffer = io.BytesIO()
    save(detector, buffer)
    buffer.seek(0)
    return load(buffer, **load_args)


def assert_same(a, b, where="detector"):
    """``a`` and ``b`` hold the same values, of the same types, on the same devices."""
    assert type(a) is type(b), where
    if isinstance(a, torch.nn.Module):
        assert_same(a.init_arguments, b.init_arguments, f"{where}.init_arguments")
        for (name, sub_a), (_, sub_b) in zip(a.named_modules(), b.named_modules(), strict=True):
            assert sub_a.training == sub_b.training, f"{where}.{name}.training"
            # Plain attributes a constructor (or anything later) set on the module.
            plain = lambda module: {k: v for k, v in vars(module).items() if not k.startswith("_")}  # noqa: E731
            assert_same(plain(sub_a), plain(sub_b), f"{where}.{name}")
        state_a, state_b = a.state_dict(), b.state_dict()
        assert list(state_a) == list(state_b), where
        for key in state_a:
            assert_same(state_a[key], state_b[key], f"{where}.{key}")
        for (key, p_a), (_, p_b) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            assert isinstance(p_b, torch.nn.Parameter) and p_a.requires_grad == p_b.requires_grad, key
    elif isinstance(a, torch.Tensor):
        assert (a.dtype, a.device, a.shape, a.requires_grad) == (b.dtype, b.device, b.shape, b.requires_grad), where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (item_a, item_b) in enumerate(zip(a, b)):
            assert_same(item_a, item_b, f"{where}[{i}]")
    elif isinstance(a, np.random.RandomState):
        assert_same(a.get_state(), b.get_state(), where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


# -- round trips --------------------------------------------------------------


@pytest.mark.parametrize("name", DETECTORS)
def test_round_trip_scores_bit_for_bit_under_every_rule(name, fitted, data):
    detector, X_test = fitted[name], data[1]
    loaded = round_trip(detector)
    for settings in DETECTORS[name][2]:
        detector.set_params(**settings)
        loaded.set_params(**settings)
        for method in ("score_samples", "decision_function", "predict"):
            np.testing.assert_array_equal(
                getattr(loaded, method)(X_test), getattr(detector, method)(X_test), err_msg=f"{settings} {method}"
            )
    detector.set_params(**DETECTORS[name][2][0])


@pytest.mark.parametrize("name", [*DETECTORS, *VARIANTS])
def test_every_fitted_attribute_is_saved_and_restored_exactly(name, fitted, data):
    # The format saves every attribute of the fitted detector, whatever its name:
    # one added to a detector later is restored here (or refused at save), never dropped.
    detector = fitted[name]
    buffer = io.BytesIO()
    save(detector, buffer)
    with zipfile.ZipFile(buffer) as archive:
        manifest = json.loads(archive.read("skgeoad-model.json"))
    params = detector.get_params(deep=False)
    assert set(manifest["params"]) == set(params)
    assert set(manifest["fitted"]) == set(vars(detector)) - set(params)
    buffer.seek(0)
    loaded = load(buffer)
    assert list(vars(loaded)) == list(vars(detector))
    for attribute, value in vars(detector).items():
        assert_same(value, vars(loaded)[attribute], attribute)
    np.testing.assert_array_equal(loaded.score_samples(data[1]), detector.score_samples(data[1]))


def test_an_attribute_that_cannot_be_stored_is_refused_naming_it(fitted, tmp_path):
    detector = clone(fitted["geometric"]).set_params()
    detector.__dict__.update(vars(fitted["geometric"]))
    for attribute, value in [("sklearn_model_", PCA()), ("callback_", print), ("extra_", {"k": [object()]})]:
        setattr(detector, attribute, value)
        with pytest.raises(TypeError, match=attribute):
            save(detector, tmp_path / "model.skgeoad")
        delattr(detector, attribute)
    assert not list(tmp_path.iterdir())  # nothing written, not even half a file


def test_a_module_outside_the_allow_list_is_refused(fitted, tmp_path):
    detector = clone(fitted["icae"])
    detector.__dict__.update(vars(fitted["icae"]))
    detector.network_ = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="network_.*Linear.*not one of skgeoad's networks"):
        save(detector, tmp_path / "model.skgeoad")


def test_refit_and_set_params_after_load(fitted, data):
    X_train, X_test = data
    loaded = round_trip(fitted["geometric"])
    loaded.set_params(epochs=1, random_state=1).fit(X_train)
    assert loaded.epochs_ == 1 and loaded.score_samples(X_test).shape == (len(X_test),)
    again = round_trip(fitted["subcluster"]).set_params(score_type="kl")
    np.testing.assert_array_equal(again.offset_, fitted["subcluster"].offset_)
    assert again.decision_function(X_test).shape == (len(X_test),)


def test_unfitted_and_foreign_estimators_are_refused(tmp_path):
    with pytest.raises(NotFittedError):
        save(GeometricTransformDetector(), tmp_path / "model.skgeoad")
    with pytest.raises(TypeError, match="skgeoad's detectors"):
        save(PCA().fit(np.eye(3)), tmp_path / "model.skgeoad")


def test_parameters_are_stored_faithfully_or_refused_naming_them(fitted, data, tmp_path):
    X_train, X_test = data
    random_state = np.random.RandomState(3)
    detector = make("geometric", epochs=1, random_state=random_state, device=torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        detector.fit(X_train)
    loaded = round_trip(detector)
    assert isinstance(loaded.random_state, np.random.RandomState)
    assert_same(loaded.random_state.get_state(), random_state.get_state())
    assert loaded.device == torch.device("cpu")
    np.testing.assert_array_equal(loaded.score_samples(X_test), detector.score_samples(X_test))
    detector.set_params(device=lambda: "cpu")  # not validated until the next fit
    with pytest.raises(TypeError, match="parameter device"):
        save(detector, tmp_path / "model.skgeoad")


def test_feature_names_of_a_dataframe_are_kept(data):
    pd = pytest.importorskip("pandas")
    X_train, X_test = data
    columns = [f"pixel_{i}" for i in range(X_train.shape[1])]
    detector = make("subcluster", n_clusters=1, validation_fraction=0).fit(pd.DataFrame(X_train, columns=columns))
    loaded = round_trip(detector)
    assert_same(loaded.feature_names_in_, detector.feature_names_in_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        scores = loaded.score_samples(pd.DataFrame(X_test, columns=columns))
    np.testing.assert_array_equal(scores, detector.score_samples(pd.DataFrame(X_test, columns=columns)))


def test_paths_and_file_objects(fitted, data, tmp_path):
    detector, X_test = fitted["adgan"], data[1]
    path = tmp_path / "model.skgeoad"
    save(detector, path)
    save(detector, str(path))  # overwritten in place
    assert [p.name for p in tmp_path.iterdir()] == ["model.skgeoad"]
    with open(path, "rb") as file:
        from_file = load(file)
    np.testing.assert_array_equal(load(str(path)).score_samples(X_test), from_file.score_samples(X_test))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_a_saved_file_gets_the_mode_open_gives(fitted, tmp_path, umask):
    # Written to a temporary file then renamed: not tempfile.mkstemp's 0o600.
    previous = os.umask(umask)
    try:
        save(fitted["icae"], tmp_path / "model.skgeoad")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(previous)
    assert oct((tmp_path / "model.skgeoad").stat().st_mode) == oct((tmp_path / "plain").stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.skgeoad", "plain"]


def test_joblib_keeps_working_beside_the_safe_format(fitted, data, tmp_path):
    detector, X_test = fitted["subcluster"], data[1]
    joblib.dump(detector, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").score_samples(X_test),
                                  detector.score_samples(X_test))  # fmt: skip


# -- files that are not ours --------------------------------------------------


class _Exploit:
    """A pickle that creates a file when unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def rewrite(path, edit_manifest=None, drop=(), replace=None, compression=zipfile.ZIP_STORED):
    """Copy of the model file at ``path`` with its manifest edited and entries dropped or replaced."""
    out = path.with_name("edited-" + path.name)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w", compression) as target:
        for info in source.infolist():
            if info.filename in drop:
                continue
            content = source.read(info)
            if info.filename == "skgeoad-model.json" and edit_manifest:
                manifest = json.loads(content)
                edit_manifest(manifest)
                content = json.dumps(manifest).encode()
            target.writestr(info.filename, (replace or {}).get(info.filename, content))
    return out


@pytest.fixture(scope="module")
def model_path(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.skgeoad"
    save(fitted["geometric"], path)
    return path


def test_a_pickle_is_refused_and_never_unpickled(fitted, tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / "evil.skgeoad").write_bytes(pickle.dumps(_Exploit(target)))
    with pytest.raises(ModelFileError, match="pickle or joblib file.*never unpickles"):
        load(tmp_path / "evil.skgeoad")
    assert not target.exists()
    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        joblib.dump(fitted["icae"], tmp_path / "renamed.skgeoad", compress=compress)
        with pytest.raises(ModelFileError, match="pickle or joblib"):
            load(tmp_path / "renamed.skgeoad")


def test_other_zips_truncated_and_empty_files_are_refused(model_path, tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match="zip archive, but not a skgeoad model"):
        load(tmp_path / "other.zip")
    content = model_path.read_bytes()
    for cut in (len(content) // 2, len(content) - 10):
        (tmp_path / "cut.skgeoad").write_bytes(content[:cut])
        with pytest.raises(ModelFileError, match="damaged or truncated"):
            load(tmp_path / "cut.skgeoad")
    (tmp_path / "empty.skgeoad").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a zip archive"):
        load(tmp_path / "empty.skgeoad")
    with pytest.raises(ModelFileError, match="names no 'skgeoad-model'"):
        load(rewrite(model_path, lambda m: m.update(format="other")))


def test_a_newer_format_version_is_refused(model_path):
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}.*Upgrade skgeoad"):
        load(rewrite(model_path, lambda m: m.update(format_version=FORMAT_VERSION + 1)))


def test_unknown_classes_are_refused(model_path):
    with pytest.raises(ModelFileError, match="'IsolationForest', not one of skgeoad's detectors"):
        load(rewrite(model_path, lambda m: m.update(estimator="IsolationForest")))

    def foreign_network(manifest):
        network = dict(manifest["fitted"]["network_"])
        manifest["fitted"]["network_"] = {**network, "__module__": "os.system"}

    with pytest.raises(ModelFileError, match="'os.system', which is not one of skgeoad's networks"):
        load(rewrite(model_path, foreign_network))

    def unknown_tag(manifest):
        manifest["fitted"]["alpha_"] = {"__pickle__": "gASV"}

    with pytest.raises(ModelFileError, match="alpha_.*'__pickle__'"):
        load(rewrite(model_path, unknown_tag))


@pytest.mark.parametrize("depth", [900, 100_000])
def test_a_deeply_nested_manifest_is_refused(model_path, depth):
    # 100000 levels: json.loads itself recurses too deep; 900: decoding the attribute does.
    with zipfile.ZipFile(model_path) as archive:
        text = archive.read("skgeoad-model.json").decode()
    text = text.replace('"fitted": {', '"fitted": {"deep_": ' + "[" * depth + "]" * depth + ", ", 1)
    with pytest.raises(ModelFileError, match="nested too deeply"):
        load(rewrite(model_path, replace={"skgeoad-model.json": text.encode()}))


@pytest.mark.parametrize("version", [0, -5, 1.0, "1", True])
def test_a_format_version_that_is_not_a_positive_integer_is_refused(model_path, version):
    with pytest.raises(ModelFileError, match=f"format_version {version!r} is not a positive integer"):
        load(rewrite(model_path, lambda m: m.update(format_version=version)))


@pytest.mark.parametrize("estimator", [["GeometricTransformDetector"], {"a": 1}, 3])
def test_an_estimator_name_that_is_not_a_string_is_refused(model_path, estimator):
    with pytest.raises(ModelFileError, match="not one of skgeoad's detectors"):
        load(rewrite(model_path, lambda m: m.update(estimator=estimator)))


@pytest.mark.parametrize("name", ["score_samples", "__dict__", "__class__", "_parameter_constraints", "epochs"])
def test_a_fitted_attribute_shadowing_a_method_or_parameter_is_refused(model_path, name):
    with pytest.raises(ModelFileError, match=f"fitted attribute '{name}', which would replace"):
        load(rewrite(model_path, lambda m: m["fitted"].update({name: 1})))


def test_invalid_parameters_are_refused_naming_them(model_path):
    def bogus(manifest):
        manifest["params"]["score_type"] = "bogus"

    with pytest.raises(ModelFileError, match="parameters of GeometricTransformDetector are invalid.*'score_type'"):
        load(rewrite(model_path, bogus))

    def contamination(manifest):
        manifest["params"]["contamination"] = 5.0

    with pytest.raises(ModelFileError, match="invalid.*'contamination' parameter"):
        load(rewrite(model_path, contamination))


def test_a_file_without_its_network_is_refused_at_load(model_path):
    with pytest.raises(ModelFileError, match=r"lacks fitted attributes GeometricTransformDetector needs.*'network_'"):
        load(rewrite(model_path, lambda m: m["fitted"].pop("network_")))


@pytest.mark.parametrize("name", [*DETECTORS, *VARIANTS])
def test_a_file_lacking_a_fitted_attribute_is_refused_or_still_scores(name, fitted, data, tmp_path):
    # Each fitted attribute deleted in turn: either load refuses the file naming it, or
    # the detector still scores under every rule (never an AttributeError at scoring).
    path = tmp_path / "model.skgeoad"
    save(fitted[name], path)
    with zipfile.ZipFile(path) as archive:
        attributes = list(json.loads(archive.read("skgeoad-model.json"))["fitted"])
    for attribute in attributes:
        edited = rewrite(path, lambda m: m["fitted"].pop(attribute))
        try:
            loaded = load(edited)
        except ModelFileError as error:
            assert "needs to score: " in str(error) and repr(attribute) in str(error), (attribute, error)
            continue
        for settings in DETECTORS[name.split("-")[0]][2]:
            if settings.get("score_type", "auto") not in ("auto", *(loaded._score_rules or ())):
                continue  # a rule of the detector's other models (the autoencoders')
            loaded.set_params(**settings)
            for method in ("score_samples", "decision_function", "predict"):
                getattr(loaded, method)(data[1])


def test_missing_misshaped_and_object_arrays_are_refused(model_path):
    with zipfile.ZipFile(model_path) as archive:
        manifest = json.loads(archive.read("skgeoad-model.json"))
    alpha = manifest["fitted"]["alpha_"]["__ndarray__"]["file"]
    with pytest.raises(ModelFileError, match=f"alpha_ \\({alpha}\\) is missing"):
        load(rewrite(model_path, drop={alpha}))
    for array in (np.zeros((3, 3)), np.zeros((4, 4), dtype=np.float32)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        with pytest.raises(ModelFileError, match="alpha_.*but the manifest says"):
            load(rewrite(model_path, replace={alpha: buffer.getvalue()}))
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match="alpha_.*not a valid .npy"):
        load(rewrite(model_path, replace={alpha: buffer.getvalue()}))
    with pytest.raises(ModelFileError, match="validation_indices_.*is compressed"):
        load(rewrite(model_path, compression=zipfile.ZIP_DEFLATED))  # a zip bomb would be
    weight = manifest["fitted"]["network_"]["state"]["fc.weight"]["file"]
    with pytest.raises(ModelFileError, match="network_.fc.weight.*is missing"):
        load(rewrite(model_path, drop={weight}))

    def wrong_architecture(manifest):
        manifest["fitted"]["network_"]["arguments"]["widen_factor"] = 2

    with pytest.raises(ModelFileError, match="(?s)network_.*cannot be rebuilt.*size mismatch"):
        load(rewrite(model_path, wrong_architecture))


def test_an_array_claiming_more_data_than_its_entry_holds_is_refused_before_allocating(model_path):
    # Reading such an array made NumPy allocate it first ("Unable to allocate 58 TiB").
    with zipfile.ZipFile(model_path) as archive:
        manifest = json.loads(archive.read("skgeoad-model.json"))
    ref = manifest["fitted"]["alpha_"]["__ndarray__"]
    huge = [10**12, 8]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": ref["dtype"], "fortran_order": False, "shape": tuple(huge)})
    huge_npy = header.getvalue() + bytes(64)

    def claim_huge(manifest):
        manifest["fitted"]["alpha_"]["__ndarray__"]["shape"] = huge

    for edit, replace in [(claim_huge, None), (claim_huge, {ref["file"]: huge_npy})]:
        with pytest.raises(ModelFileError, match=r"alpha_.*claims .*\(1000000000000, 8\), more data than its \d+ bytes"):
            load(rewrite(model_path, edit, replace=replace))
    # The .npy header alone claims it: checked against the manifest before any data is read.
    with pytest.raises(ModelFileError, match=r"alpha_.*holds .*\(1000000000000, 8\), but the manifest says"):
        load(rewrite(model_path, replace={ref["file"]: huge_npy}))

    def bad_shape(manifest):
        manifest["fitted"]["alpha_"]["__ndarray__"]["shape"] = [-1]

    with pytest.raises(ModelFileError, match="alpha_'s array is malformed.*non-negative"):
        load(rewrite(model_path, bad_shape))


def test_other_versions_warn_but_load(model_path, data):
    def older(manifest):
        manifest["versions"].update({"skgeoad": "0.0.1", "torch": "2.0.0"})

    with pytest.warns(SavedVersionWarning, match="skgeoad 0.0.1 .*torch 2.0.0") as caught:
        detector = load(rewrite(model_path, older))
    assert [warning.filename for warning in caught] == [__file__]  # the caller's line
    assert detector.score_samples(data[1]).shape == (len(data[1]),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(model_path)  # same versions: silent

        def other_build(manifest):
            manifest["versions"]["torch"] = torch.__version__.split("+")[0] + "+cu126"

        load(rewrite(model_path, other_build))  # the same torch release, built for CUDA: silent


# -- devices ------------------------------------------------------------------


def test_cuda_fitted_files_load_on_a_machine_without_cuda(fitted, data, tmp_path):
    # As a CUDA-fitted model's file reads: device_ = cuda:0 (tensors are stored
    # on the CPU whatever the device). Loaded in a process that sees no GPU.
    X_test = data[1]
    np.save(tmp_path / "X.npy", X_test)
    # "auto" is resolved anew for the CPU the file loads on.
    cpu_bf16 = use_mixed_precision("auto", torch.device("cpu"))
    expected = {}
    for name in DETECTORS:
        save(fitted[name], tmp_path / f"{name}.skgeoad")
        rewrite(tmp_path / f"{name}.skgeoad", lambda m: m["fitted"].update(device_={"__device__": "cuda:0"}))
        expected[name] = fitted[name].score_samples(X_test)
    script = textwrap.dedent(
        f"""
        import warnings, numpy as np, torch, skgeoad
        assert not torch.cuda.is_available()
        for name in {list(DETECTORS)!r}:
            path = {str(tmp_path)!r} + "/edited-" + name + ".skgeoad"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                detector = skgeoad.load(path)
            assert any("fitted on cuda:0" in str(w.message) for w in caught), caught
            assert detector.device_.type == "cpu" and detector.mixed_precision_ is {cpu_bf16!r}
            np.save({str(tmp_path)!r} + "/" + name + ".npy", detector.score_samples(np.load({str(tmp_path / "X.npy")!r})))
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert skgeoad.load(path, device="cpu").device_.type == "cpu"  # asked for: no warning
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    for name in DETECTORS:
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), expected[name])


def test_an_unavailable_device_asked_for_is_refused(model_path):
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(ValueError, match="cuda:7"):
        load(model_path, device="cuda:7")


# -- the committed file -------------------------------------------------------


def test_the_committed_reference_model_keeps_loading_and_scoring(monkeypatch):
    """tests/data/reference_geometric.skgeoad, written by skgeoad 0.1.0 in format 1
    (regenerate with tests/data/make_reference_model.py only when the format changes).

    Its scores were computed in float32 (``mixed_precision="auto"`` on a CPU without
    native bf16), and "auto" is resolved anew where a model loads: the CPU's bf16
    probes are turned off here so that the float32 scores are reproduced.
    """
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    sys.path.insert(0, str(DATA))
    try:
        from make_reference_model import reference_rows
    finally:
        sys.path.remove(str(DATA))
    expected = json.loads((DATA / "reference_geometric_scores.json").read_text())
    assert expected["format_version"] == 1
    with warnings.catch_warnings():
        # Written with some versions; later ones may warn, and must still load.
        warnings.simplefilter("ignore", SavedVersionWarning)
        detector = load(DATA / "reference_geometric.skgeoad", device="cpu")
    assert isinstance(detector, GeometricTransformDetector) and detector.n_transforms_ == 4
    _, X_rows = reference_rows()
    for rule in ("dirichlet", "simplified"):
        detector.set_params(score_type=rule)
        # Same values to float32 rounding (other CPUs and torch versions may sum differently).
        np.testing.assert_allclose(detector.score_samples(X_rows), expected[rule]["score_samples"], rtol=1e-5)
        scale = np.abs(expected[rule]["score_samples"]).max()
        np.testing.assert_allclose(
            detector.decision_function(X_rows), expected[rule]["decision_function"], rtol=0, atol=1e-5 * scale
        )
        np.testing.assert_array_equal(detector.predict(X_rows), expected[rule]["predict"])
    # Written before GEOM kept the k-NN rule's training features: that rule asks for a refit.
    for rule in ("knn", "combined"):
        with pytest.raises(ValueError, match="fitted by an earlier version: refit it"):
            detector.set_params(score_type=rule).score_samples(X_rows)


def test_the_user_guide_example_runs():
    """The doctest in docs/user_guide.rst's "Saving and loading" section."""
    import doctest

    guide = (Path(__file__).parents[1] / "docs" / "user_guide.rst").read_text()
    start = guide.index("Saving and loading\n---")
    section = guide[start : guide.index("\n---", start + 30)]
    test = doctest.DocTestParser().get_doctest(section, {}, "user_guide: Saving and loading", None, 0)
    assert len(test.examples) >= 8
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
