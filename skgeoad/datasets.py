"""Image data sets for the benchmarks and examples, read from local files only.

Every loader returns ``(X_train, y_train, X_test, y_test)`` with images as
channels-last arrays ``(n, H, W)`` or ``(n, H, W, C)`` that the detectors take
directly. Nothing is ever downloaded.
"""

import gzip
import os
from pathlib import Path

import numpy as np

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

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


def _fashion_mnist_dir(data_home):
    candidates = []
    if data_home is not None:
        candidates.append(Path(data_home))
    if os.environ.get("SKGEOAD_DATA"):
        base = Path(os.environ["SKGEOAD_DATA"])
        candidates += [base / "fashion-mnist", base]
    candidates.append(DEBIAN_FASHION_MNIST)
    for directory in candidates:
        if (directory / "train-images-idx3-ubyte.gz").exists():
            return directory
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...) not found; looked in: {looked}. "
        "Install Debian's package (apt-get install dataset-fashion-mnist), or put the four "
        "files in a folder and pass data_home= or set SKGEOAD_DATA."
    )


def load_fashion_mnist(data_home=None):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 + 10,000 grey 28x28 images.

    Looks for the standard IDX ``.gz`` files in ``data_home``, then in
    ``$SKGEOAD_DATA`` (or its ``fashion-mnist`` sub-folder), then in
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        Images ``(n, 28, 28)`` of uint8, labels 0-9 (see ``FASHION_MNIST_CLASSES``).
    """
    directory = _fashion_mnist_dir(data_home)
    parts = [
        read_idx(directory / f"{prefix}-{kind}-idx{dims}-ubyte.gz")
        for prefix in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    ]
    return tuple(parts)


def pad_images(X, padding, value=0):
    """Pad the two spatial axes of ``(n, H, W[, C])`` images by ``padding`` pixels.

    GEOM zero-pads 28x28 (Fashion-)MNIST to 32x32 before scaling pixels to
    [-1, 1], so the border becomes -1.
    """
    X = np.asarray(X)
    widths = [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (X.ndim - 3)
    return np.pad(X, widths, constant_values=value)


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
    """
    return X_train[y_train == normal_class], X_test, y_test == normal_class
