import gzip

import numpy as np
import pytest

from skgeoad import datasets


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_read_idx_round_trip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3)).astype(np.uint8)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / name), array)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "labels.idx", np.arange(10))
    data = (tmp_path / "labels.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(tmp_path / "short.idx")
    (tmp_path / "text.idx").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(tmp_path / "text.idx")


def fake_fashion_mnist(directory, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_fashion_mnist_from_data_home_and_environment(tmp_path, monkeypatch):
    fake_fashion_mnist(tmp_path)
    X_train, y_train, X_test, y_test = datasets.load_fashion_mnist(tmp_path)
    assert X_train.shape == (6, 28, 28) and X_test.shape == (4, 28, 28)
    np.testing.assert_array_equal(y_test, [0, 1, 2, 3])
    monkeypatch.setenv("SKGEOAD_DATA", str(tmp_path))
    assert datasets.load_fashion_mnist()[0].shape == (6, 28, 28)


def test_missing_fashion_mnist_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SKGEOAD_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(datasets, "DEBIAN_DATASETS", tmp_path / "debian")
    with pytest.raises(FileNotFoundError, match="nowhere.*debian.*apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist()


def test_explicit_data_home_never_falls_back_on_another_copy(tmp_path, monkeypatch):
    fake_fashion_mnist(tmp_path)  # a good copy where $SKGEOAD_DATA points
    monkeypatch.setenv("SKGEOAD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data_home .*typo is not a folder"):
        datasets.load_fashion_mnist(tmp_path / "typo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="looked in: [^,]*empty, [^,]*empty/fashion-mnist\\. "):
        datasets.load_fashion_mnist(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="typo is not a folder"):
        datasets.load_cifar10(tmp_path / "typo")


def test_digits_split_is_stratified_halves():
    X_train, y_train, X_test, y_test = datasets.load_digits_split()
    assert X_train.shape[1:] == (8, 8) and len(X_train) + len(X_test) == 1797
    assert np.abs(np.bincount(y_train) - np.bincount(y_test)).max() <= 1


def test_pad_and_one_vs_all():
    images = np.ones((3, 28, 28))
    padded = datasets.pad_images(images, 2)
    assert padded.shape == (3, 32, 32) and padded[:, 0].sum() == 0 and padded[:, 2:30, 2:30].all()
    X_normal, X_test, is_normal = datasets.one_vs_all(
        np.arange(6), np.array([0, 1, 0, 1, 2, 2]), np.arange(4), np.array([1, 0, 1, 2]), normal_class=1
    )
    np.testing.assert_array_equal(X_normal, [1, 3])
    np.testing.assert_array_equal(is_normal, [True, False, True, False])


def write_cifar(directory, files, n, label_keys):
    import pickle

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    for name in files:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072)).astype(np.uint8)}
        batch.update({key: list(rng.integers(0, 10, size=n)) for key in label_keys})
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle)
    return batch


def test_cifar10_reader_on_tiny_batches(tmp_path):
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    last = write_cifar(tmp_path / "cifar-10-batches-py", files, 4, [b"labels"])
    X_train, y_train, X_test, y_test = datasets.load_cifar10(tmp_path)
    assert X_train.shape == (20, 32, 32, 3) and X_test.shape == (4, 32, 32, 3)
    # Rows hold three 1024-value colour planes: pixel (i, j) of channel c is row[c*1024 + 32*i + j].
    row = last[b"data"][1]
    assert X_test[1, 5, 7, 2] == row[2 * 1024 + 32 * 5 + 7]
    np.testing.assert_array_equal(y_test, last[b"labels"])


def test_cifar100_reader_uses_super_classes_by_default(tmp_path):
    last = write_cifar(tmp_path / "cifar-100-python", ["train", "test"], 3, [b"coarse_labels", b"fine_labels"])
    assert list(datasets.load_cifar100(tmp_path)[3]) == list(last[b"coarse_labels"])
    assert list(datasets.load_cifar100(tmp_path, coarse=False)[3]) == list(last[b"fine_labels"])


def test_missing_cifar_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR cannot be downloaded here"):
        datasets.load_cifar10(tmp_path)


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.2])
def test_contaminated_split_has_the_exact_fraction_spread_over_classes(fraction):
    y = np.repeat(np.arange(10), 100)
    X = np.arange(1000)[:, None]
    X_mixed, is_normal = datasets.contaminated(X, y, 4, fraction, max_normal=95)
    n_anomalies = round(fraction * 95 / (1 - fraction))
    assert is_normal.sum() == 95 and (~is_normal).sum() == n_anomalies
    assert np.all(y[X_mixed[is_normal, 0]] == 4)
    counts = np.bincount(y[X_mixed[~is_normal, 0]], minlength=10)
    assert counts[4] == 0 and counts.max() - np.delete(counts, 4).min() <= 1
    assert len(np.unique(X_mixed[:, 0])) == len(X_mixed)


def test_contaminated_split_explains_impossible_requests():
    y = np.repeat([3, 5, 7], [10, 10, 2])
    X = np.arange(len(y))[:, None]
    with pytest.raises(ValueError, match=r"normal_class: y has no class 42; its classes are \[3, 5, 7\]"):
        datasets.contaminated(X, y, 42, 0.1)
    with pytest.raises(ValueError, match="y has no class other than normal_class 3 to draw 1 anomalies"):
        datasets.contaminated(X[:10], y[:10], 3, 0.1)
    # Contamination 0 needs no other class.
    X_mixed, is_normal = datasets.contaminated(X[:10], y[:10], 3, 0.0)
    assert len(X_mixed) == 10 and is_normal.all()
    # 10 normal images at 40% want 7 anomalies: 4 and 3 from classes 5 and 7, but 7 has 2.
    with pytest.raises(ValueError, match="7 anomalies .*class 7 has 2, [34] wanted"):
        datasets.contaminated(X, y, 3, 0.4)
    with pytest.raises(ValueError, match="max_normal must be None or at least 1, got 0"):
        datasets.contaminated(X, y, 3, 0.1, max_normal=0)


def test_one_vs_all_and_multi_normal_name_a_missing_class():
    y = np.repeat(np.arange(4), 3)
    with pytest.raises(ValueError, match=r"normal_class: y_train has no class 9; its classes are \[0, 1, 2, 3\]"):
        datasets.one_vs_all(y, y, y, y, normal_class=9)
    with pytest.raises(ValueError, match=r"anomaly_classes: y_test has no class \[8, 9\]"):
        datasets.multi_normal(y, y, y, y, [0], [3, 8, 9])
    with pytest.raises(ValueError, match="normal_classes: y_train has no class 7"):
        datasets.multi_normal(y, y, y, y, [0, 7], [3])
    with pytest.raises(ValueError, match="at least one normal and one anomaly class"):
        datasets.multi_normal(y, y, y, y, [0, 1], [])


def test_multi_normal_split():
    y_train, y_test = np.repeat(np.arange(10), 3), np.arange(10)
    X_normal, y_normal, X_eval, is_normal = datasets.multi_normal(
        y_train[:, None], y_train, y_test[:, None], y_test, [0, 1], [5, 6, 7, 8, 9]
    )
    assert set(y_normal) == {0, 1} and len(X_normal) == 6
    np.testing.assert_array_equal(X_eval[:, 0], [0, 1, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(is_normal, [True, True] + [False] * 5)
    with pytest.raises(ValueError, match="both normal and anomalous"):
        datasets.multi_normal(y_train, y_train, y_test, y_test, [0, 5], [5, 6])
