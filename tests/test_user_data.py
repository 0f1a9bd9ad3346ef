"""Your own data: .npz files and folders of images, in Python and in the benchmark."""

import json
import pickle
import weakref

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skgeoad import benchmark, datasets
from skgeoad.benchmark import cli

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture
def digits_npz(tmp_path, digits):
    path = tmp_path / "digits.npz"
    np.savez(path, X=digits.images, y=digits.target)
    return path


def read_records(out):
    return json.loads((out / "results.json").read_text())["records"]


def usage_error(argv, capsys, tmp_path):
    """The one line a bad command line prints, after checking it exits 2, runs nothing, leaves nothing."""
    out = tmp_path / "results"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--detectors", "iforest", "--quiet", "--out", str(out), *argv])
    assert exit_info.value.code == 2
    stdout, err = capsys.readouterr()
    assert stdout == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err.strip()


@pytest.fixture
def no_runs(monkeypatch):
    monkeypatch.setattr(cli, "run_all", lambda *a, **k: pytest.fail("a run started despite bad data"))


def write_folder(root, spec, size=(8, 8), mode="L"):
    """``spec``: class name -> number of images; pixel values differ per class and image."""
    for k, (name, count) in enumerate(spec.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            value = 30 * k + 3 * i
            colour = value if mode == "L" else (value, 255 - value, 7 * i)
            Image.new(mode, size, colour).save(root / name / f"{i}.png")
    return root


# -- Python API -------------------------------------------------------------------


def test_npz_x_y_is_split_stratified_in_halves(digits_npz, digits):
    X_train, y_train, X_test, y_test = datasets.load_dataset(digits_npz)
    assert X_train.shape == (898, 8, 8) and X_test.shape == (899, 8, 8)
    assert np.abs(np.bincount(y_train) - np.bincount(y_test)).max() <= 1
    # The same split as the built-in digits: same seed, same stratification.
    builtin = datasets.load_digits_split()
    np.testing.assert_array_equal(y_train, builtin[1])
    np.testing.assert_array_equal(X_test, builtin[2])


def test_npz_given_split_string_labels_and_flat_rows_with_a_shape(tmp_path, digits):
    names = np.array([f"digit-{d}" for d in range(10)])
    path = tmp_path / "split.npz"
    np.savez(path, X_train=digits.data[:900], y_train=names[digits.target[:900]],
             X_test=digits.data[900:], y_test=names[digits.target[900:]])  # fmt: skip
    X_train, y_train, X_test, y_test = datasets.load_npz(path)
    assert X_train.shape == (900, 64) and y_train[0] == "digit-0" and len(y_test) == 897
    X_train, *_ = datasets.load_npz(path, image_shape=(4, 16))
    assert X_train.shape == (900, 4, 16)


def test_image_folder_most_common_size_and_grey(tmp_path):
    root = write_folder(tmp_path / "grey", {"cat": 4, "dog": 4}, size=(10, 6))  # 6 high, 10 wide
    Image.new("L", (20, 20), 99).save(root / "dog" / "big.png")  # resized to 6x10
    (root / "dog" / "notes.txt").write_text("not an image: left alone")
    X_train, y_train, X_test, y_test = datasets.load_image_folder(root)
    assert X_train.shape[1:] == (6, 10) and X_train.dtype == np.uint8
    assert len(X_train) + len(X_test) == 9 and set(y_test) == {"cat", "dog"}


def test_image_folder_is_rgb_when_any_image_has_colour_or_as_asked(tmp_path):
    root = write_folder(tmp_path / "mixed", {"a": 3, "b": 3})
    Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "b" / "red.png")
    Image.new("RGB", (8, 8), (50, 50, 50)).save(root / "a" / "grey-as-rgb.png")
    X_train, _, X_test, _ = datasets.load_image_folder(root)
    assert X_train.shape[1:] == (8, 8, 3)
    X_train, _, _, _ = datasets.load_image_folder(root, image_shape=(4, 4, 1))
    assert X_train.shape[1:] == (4, 4)
    # Grey images in an RGB file are grey.
    grey = write_folder(tmp_path / "grey", {"a": 2, "b": 2})
    Image.new("RGB", (8, 8), (50, 50, 50)).save(grey / "a" / "grey-as-rgb.png")
    assert datasets.load_image_folder(grey)[0].ndim == 3


@pytest.mark.parametrize("image_shape", [None, (4, 4)])
def test_image_folder_decodes_one_image_at_a_time(image_shape, tmp_path, monkeypatch):
    # A folder of camera photos must not be held decoded in memory at full size: whenever an
    # image is opened, at most one other full-size image (the one before it) may be alive.
    root = write_folder(tmp_path / "many", {"a": 5, "b": 5}, size=(64, 64))
    real_init, real_open, images, most_alive = Image.Image.__init__, Image.open, [], [0]

    def tracking_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        images.append(weakref.ref(self))

    def tracking_open(file, *args, **kwargs):
        alive = [ref() for ref in images]
        most_alive[0] = max(most_alive[0], sum(i is not None and i.size == (64, 64) for i in alive))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "__init__", tracking_init)
    monkeypatch.setattr(Image, "open", tracking_open)
    X_train, _, X_test, _ = datasets.load_image_folder(root, image_shape=image_shape)
    assert len(X_train) + len(X_test) == 10 and len(images) >= 10
    assert most_alive[0] <= 1


def test_image_folder_with_its_own_train_and_test(tmp_path):
    write_folder(tmp_path / "data" / "train", {"good": 5})  # only normal images to train on
    write_folder(tmp_path / "data" / "test", {"bad": 2, "good": 3})
    X_train, y_train, X_test, y_test = datasets.load_image_folder(tmp_path / "data")
    assert y_train.tolist() == ["good"] * 5 and sorted(y_test.tolist()) == ["bad"] * 2 + ["good"] * 3


def test_image_folder_without_pillow_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImportError, match=r"needs Pillow: pip install pillow \(or skgeoad\[images\]\)"):
        datasets.load_image_folder(tmp_path)


# -- the benchmark on your own data --------------------------------------------


def test_benchmark_on_an_npz_matches_the_builtin_digits(digits_npz, tmp_path):
    argv = ["--classes", "0,1", "--detectors", "iforest", "--quiet"]
    assert benchmark.main([*argv, "--out", str(tmp_path / "own"), "--dataset", str(digits_npz)]) == 0
    assert benchmark.main([*argv, "--out", str(tmp_path / "builtin")]) == 0
    own = {r["key"]: r["auroc"] for r in read_records(tmp_path / "own")}
    builtin = {r["key"]: r["auroc"] for r in read_records(tmp_path / "builtin")}
    assert own == pytest.approx(builtin, abs=1e-12)  # same split; pixels scaled by 16 either way


@pytest.mark.parametrize(
    "protocol, extra, keys",
    [
        ("one-vs-all", ["--classes", "cat,dog"], {"cat", "dog"}),
        ("contaminated", ["--classes", "bird", "--contamination", "0.2"], {"bird"}),
        ("multi-normal", ["--anomaly-classes", "dog", "--max-normal-classes", "2"], {1, 2}),
    ],
)
def test_every_protocol_runs_on_a_folder_with_classes_by_name(protocol, extra, keys, tmp_path):
    root = write_folder(tmp_path / "pets", {"bird": 12, "cat": 12, "dog": 12}, size=(12, 10))
    out = tmp_path / "results"
    argv = ["--dataset", str(root), "--protocol", protocol, *extra, "--detectors", "iforest,subcluster",
            "--set", "subcluster.epochs=1", "--set", "subcluster.device=cpu",
            "--set", "subcluster.validation_fraction=0", "--quiet", "--out", str(out)]  # fmt: skip
    assert benchmark.main(argv) == 0
    records = read_records(out)
    assert {r["key"] for r in records} == keys
    assert all(r["dataset"] == str(root) and 0 <= r["auroc"] <= 1 for r in records)
    # 10x12 rows are not square: the deep detector is told they are images.
    deep = [r for r in records if r["detector"] == "subcluster"]
    assert deep and all(r["params"]["image_shape"] == "(10, 12)" for r in deep)
    if protocol == "multi-normal":
        assert records[0]["normal_classes"][0] == "bird" and records[0]["anomaly_classes"] == ["dog"]


def npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


X4, Y4 = np.zeros((4, 8, 8)), np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X_train": X4, "y_train": Y4, "X_test": X4}, "bad.npz: no y_test: expected arrays X_train, y_train, "
                                                       "X_test, y_test or X, y; found X_test, X_train, y_train"),
        ({"images": X4, "labels": Y4}, "no X_train, y_train, X_test, y_test: expected arrays"),
        ({"X": X4, "y": Y4[:3]}, "bad.npz: X has 4 samples but y 3 labels"),
        ({"X": X4, "y": np.zeros(4, dtype=int)}, "bad.npz: y holds one class only (0); anomaly detection needs"),
        ({"X": np.array([["a"] * 64] * 4), "y": Y4}, "bad.npz: X is not numeric (dtype <U1)"),
        ({"X": np.where(np.eye(8, dtype=bool), np.nan, X4), "y": Y4}, "bad.npz: X holds 32 NaN or infinite values"),
        ({"X": X4, "y": Y4 + 0.5}, "bad.npz: y holds 0.5, not a class label (integers or strings)"),
        ({"X": np.zeros(4), "y": Y4}, "bad.npz: X has shape (4,); expected rows (n, n_features) or images"),
        ({"X": X4, "y": np.array([0, 1, 1, 1])}, "class 0 has 1 sample; a stratified train/test split needs"),
        ({"X_train": X4, "y_train": Y4, "X_test": X4[:, :4], "y_test": Y4},
         "X_train holds samples of shape (8, 8) but X_test of shape (4, 8)"),
        ({"X_train": X4, "y_train": Y4, "X_test": X4, "y_test": Y4 * 0}, "y_test holds one class only (0)"),
        ({"X": np.array([{}, {}, {}, {}], dtype=object), "y": Y4}, "X holds Python objects, which are not loaded"),
        ({"X_train": X4, "y_train": Y4.astype(str), "X_test": X4, "y_test": Y4},
         "y_train holds string labels but y_test integer labels; give both the same kind"),
    ],
)  # fmt: skip
def test_bad_npz_is_a_one_line_usage_error(arrays, message, tmp_path, capsys, no_runs):
    path = npz(tmp_path, **arrays)
    error = usage_error(["--dataset", path], capsys, tmp_path)
    assert error.startswith(f"skgeoad-benchmark: error: --dataset: {path}: ")
    assert message in error


def test_a_pickle_renamed_npz_is_refused_not_unpickled(tmp_path, capsys, no_runs):
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps({"X": [1, 2]}))
    assert "model.npz: not a NumPy .npz file" in usage_error(["--dataset", str(path)], capsys, tmp_path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "empty folder: expected one sub-folder of images per class"),
        (lambda root: Image.new("L", (8, 8)).save(root / "loose.png"), "images but no class sub-folders"),
        (lambda root: (root / "cat").mkdir(), "class folder 'cat' holds no images"),
        (lambda root: write_folder(root, {"cat": 3}), "the folder holds one class only (cat)"),
        (lambda root: (write_folder(root, {"cat": 2, "dog": 2}), (root / "dog" / "5.png").write_bytes(b"junk")),
         "dog/5.png: not a readable image (cannot identify image file"),
    ],
)  # fmt: skip
def test_bad_image_folder_is_a_one_line_usage_error(make, message, tmp_path, capsys, no_runs):
    root = tmp_path / "images"
    root.mkdir()
    make(root)
    error = usage_error(["--dataset", str(root)], capsys, tmp_path)
    assert error.startswith("skgeoad-benchmark: error: --dataset: ") and message in error


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "no/such/data.npz"], "--dataset: no/such/data.npz: no such file or folder"),
        (["--dataset", "digts"], "unknown data set 'digts' (did you mean 'digits'?); choose from"),
        (["--image-shape", "8x8"], "--image-shape applies to your own data (--dataset PATH) only"),
        (["--image-shape", "8by8"], "--image-shape: expected HEIGHTxWIDTH, HEIGHTxWIDTHxCHANNELS"),
        (["--dataset", "{npz}", "--classes", "7,cat"], "--classes: {npz} has no class cat; its classes are 0, 1,"),
        (["--dataset", "{npz}", "--image-shape", "4x4"], "X holds samples of shape (8, 8), not image_shape (4, 4)"),
    ],
)
def test_bad_options_on_your_own_data(argv, message, digits_npz, tmp_path, capsys, no_runs):
    argv = [arg.format(npz=digits_npz) for arg in argv]
    assert message.format(npz=digits_npz) in usage_error(argv, capsys, tmp_path)


@pytest.mark.parametrize("protocol", ["one-vs-all", "contaminated"])
def test_a_normal_class_missing_from_the_test_set_is_a_usage_error(protocol, digits, tmp_path, capsys, no_runs):
    # Class 0 is in training but not in the test set: its AUROC would be NaN.
    y = digits.target
    path = npz(tmp_path, X_train=digits.data[:600], y_train=y[:600],
               X_test=digits.data[600:][y[600:] != 0], y_test=y[600:][y[600:] != 0])  # fmt: skip
    error = usage_error(["--dataset", path, "--protocol", protocol, "--classes", "0"], capsys, tmp_path)
    assert f"--protocol {protocol} on {path}: normal class 0 is not in y_test" in error


def test_a_run_whose_auroc_is_undefined_records_an_error_not_nan():
    from skgeoad.benchmark import make_detector, runner
    from skgeoad.benchmark.protocols import Task

    X = np.random.default_rng(0).normal(size=(20, 3))
    task = Task("toy", "one-vs-all", 0, X, X, np.ones(20, dtype=bool))
    record = runner.run_one(task, "iforest", make_detector("iforest"), 0)
    assert "auroc" not in record and "holds only normal samples: AUROC is undefined" in record["error"]


def test_16_bit_images_are_rescaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 60000, 64).reshape(8, 8).astype(np.uint16)
    for name, images in (("dark", [ramp // 4, ramp // 3]), ("light", [ramp, ramp // 2])):
        (tmp_path / name).mkdir()
        for i, values in enumerate(images):
            Image.fromarray(values).save(tmp_path / name / f"{i}.png")  # 16-bit grey PNG
    assert Image.open(tmp_path / "light" / "0.png").mode.startswith("I")
    X_train, y_train, X_test, y_test = datasets.load_image_folder(tmp_path)
    X = np.concatenate([X_train, X_test])
    assert X.dtype == np.uint8 and len(np.unique(X)) > 10  # not 0 / 255
    assert abs(int(X.max()) - round(60000 * 255 / 65535)) <= 1


@pytest.mark.parametrize("typed, key", [("01", "01"), ("2", "02")])
def test_zero_padded_class_folders_are_found_by_name(typed, key, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        cli, "run_all", lambda jobs, **k: seen.setdefault("keys", [j[0].key for j in jobs])
    )
    root = write_folder(tmp_path / "images", {"01": 4, "02": 4})
    argv = ["--dataset", str(root), "--detectors", "iforest", "--classes", typed, "--quiet",
            "--out", str(tmp_path / "out")]  # fmt: skip
    benchmark.main(argv)
    assert seen["keys"] == [key]


def test_zero_padded_class_matches_an_integer_label(digits_npz, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        cli, "run_all", lambda jobs, **k: seen.setdefault("keys", [j[0].key for j in jobs])
    )
    argv = ["--dataset", str(digits_npz), "--detectors", "iforest", "--classes", "03", "--quiet",
            "--out", str(tmp_path / "out")]  # fmt: skip
    benchmark.main(argv)
    assert seen["keys"] == [3]


def test_a_csv_file_is_plainly_not_an_npz(tmp_path, capsys, no_runs):
    path = tmp_path / "x.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n")
    error = usage_error(["--dataset", str(path)], capsys, tmp_path)
    assert f"--dataset: {path}: not a NumPy .npz file (numpy.savez writes a zip archive" in error
    assert "pickle" not in error


def test_image_shape_tabular_keeps_64_features_rows(tmp_path, digits, monkeypatch):
    from skgeoad.benchmark import runner

    seen = {}
    monkeypatch.setattr(cli, "run_all", lambda jobs, **k: seen.setdefault("jobs", jobs))
    path = npz(tmp_path, X=digits.data, y=digits.target)  # (n, 64): 8x8 images unless told
    argv = ["--dataset", path, "--image-shape", "tabular", "--detectors", "geometric",
            "--set", "geometric.epochs=1", "--set", "geometric.n_affine_transforms=2",
            "--set", "geometric.validation_fraction=0",
            "--classes", "0", "--max-train", "40", "--n-test", "60", "--quiet",
            "--out", str(tmp_path / "out")]  # fmt: skip
    benchmark.main(argv)
    (job,) = seen["jobs"]
    assert job[0].image_shape == "tabular"
    record = runner.run_one(*job)
    assert "error" not in record, record.get("error")
    assert record["params"]["image_shape"] == "'tabular'"
