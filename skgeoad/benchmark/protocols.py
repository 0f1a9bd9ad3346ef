"""Evaluation tasks of the papers' protocols, built from a loaded data set.

A task is one training set and one labelled evaluation set; the runner fits
every detector on every task for every seed.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import datasets

PROTOCOLS = ("one-vs-all", "contaminated", "multi-normal")

#: name -> (loader(data_home) -> (X_train, y_train, X_test, y_test), largest pixel value, pad)
DATASETS = {
    "digits": (lambda data_home: datasets.load_digits_split(), 16.0, 0),
    # GEOM zero-pads (Fashion-)MNIST to 32x32 before scaling, so the pad is -1.
    "fashion-mnist": (datasets.load_fashion_mnist, 255.0, 2),
    "mnist5k": (lambda data_home: datasets.load_mnist5k(), 255.0, 2),
    "cifar10": (datasets.load_cifar10, 255.0, 0),
    "cifar100": (datasets.load_cifar100, 255.0, 0),
}


@dataclass
class Task:
    """One training set and one evaluation set.

    ``key`` names the task inside its protocol: the normal class (one-vs-all,
    contaminated; an integer or, for class folders, the folder's name) or the
    number of normal classes (multi-normal). ``image_shape``, when set, is
    given to the detectors that take one and were left to infer it: rows of
    your own images need not be square.
    """

    dataset: str
    protocol: str
    key: int | str
    X_train: np.ndarray = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    is_normal: np.ndarray = field(repr=False)
    fit_params: dict = field(default_factory=dict, repr=False)
    info: dict = field(default_factory=dict)
    image_shape: tuple | str | None = field(default=None, repr=False)


def is_path(name):
    """Whether ``--dataset name`` is a file or folder of your own rather than a known data set.

    Examples
    --------
    >>> is_path("digits"), is_path("my_data.npz"), is_path("data/images")
    (False, True, True)
    """
    if name in DATASETS:
        return False
    return name.endswith(".npz") or "/" in name or os.sep in name or Path(name).exists()


def load_rows(name, data_home=None, *, image_shape=None, return_shape=False):
    """A data set as flat rows scaled to [-1, 1], padded as its protocol wants.

    ``name`` is one of :data:`DATASETS` or the path of your own data: a
    ``.npz`` file or a folder of images, one sub-folder per class (see
    :func:`skgeoad.datasets.load_dataset`). Your own data are scaled with
    the training set's smallest and largest value (one pair for all
    features, as the detectors do), not padded.

    Parameters
    ----------
    image_shape : tuple or "tabular", optional
        Your own data: the images' ``(H, W)`` or ``(H, W, C)``, or
        ``"tabular"``: the rows are plain features, never images (even
        64 of them, which the detectors would read as 8x8).
    return_shape : bool, default=False
        Also return the images' shape: ``(H, W)`` or ``(H, W, C)`` of your
        own images, ``"tabular"`` when asked so, ``None`` for rows and for
        the known data sets (whose square images the detectors infer).

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
    image_shape : tuple or None
        Only with ``return_shape=True``.
    """
    if is_path(name):
        tabular = isinstance(image_shape, str) and image_shape == "tabular"
        X_train, y_train, X_test, y_test = datasets.load_dataset(
            name, image_shape=None if tabular else image_shape
        )
        low, high = float(X_train.min()), float(X_train.max())
        if high == low:
            raise ValueError(f"{name}: every value of the training set is {low}; nothing to learn.")
        shape = "tabular" if tabular else X_train.shape[1:] if X_train.ndim > 2 else None
    else:
        if name not in DATASETS:
            raise ValueError(f"Unknown data set {name!r}; choose from {sorted(DATASETS)}.")
        loader, max_pixel, pad = DATASETS[name]
        X_train, y_train, X_test, y_test = loader(data_home)
        if pad:
            X_train, X_test = datasets.pad_images(X_train, pad), datasets.pad_images(X_test, pad)
        low, high, shape = 0.0, max_pixel, None

    def rows(X):
        return ((X.reshape(len(X), -1) - low) / (high - low) * 2 - 1).astype(np.float32)

    loaded = rows(X_train), np.asarray(y_train), rows(X_test), np.asarray(y_test)
    return (*loaded, shape) if return_shape else loaded


def _subsample(indices, n, rng):
    if n is None or n >= len(indices):
        return indices
    return np.sort(rng.choice(indices, n, replace=False))


def stratified_subset(y, n, random_state=0):
    """Indices of at most ``n`` rows keeping the class proportions of ``y``.

    Raises
    ------
    ValueError
        When ``n`` is below the number of classes: a stratified subset holds
        at least one row of each.

    Examples
    --------
    >>> y = np.repeat([0, 1], [30, 10])
    >>> np.bincount(y[stratified_subset(y, 8)]).tolist()
    [6, 2]
    """
    if n is None or n >= len(y):
        return np.arange(len(y))
    n_classes = len(np.unique(y))
    if n < n_classes:
        raise ValueError(f"{n} rows cannot hold one of each of the {n_classes} classes.")
    if len(y) - n < n_classes:
        # train_test_split would stratify the rows left out too, and fewer
        # rows than classes cannot be: leaving out that handful at random
        # hardly moves the proportions.
        dropped = np.random.default_rng(random_state).choice(len(y), len(y) - n, replace=False)
        return np.setdiff1d(np.arange(len(y)), dropped)
    from sklearn.model_selection import train_test_split

    kept, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=random_state)
    return np.sort(kept)


def make_tasks(
    dataset, protocol, X_train, y_train, X_test, y_test, *, classes=None, max_train=None,
    contamination=0.05, anomaly_classes=None, max_normal_classes=5, image_shape=None,
):  # fmt: skip
    """The tasks of ``protocol`` on one data set.

    Class labels are integers or strings (the names of class folders).

    Parameters
    ----------
    classes : list, optional
        Normal classes to try (one-vs-all, contaminated); default all.
    max_train : int, optional
        Cap on the training images of each normal class (at least 1), drawn
        with a fixed seed.
    contamination : float, default=0.05
        Share of anomalies in the contaminated training set.
    anomaly_classes : list of int, optional
        The fixed anomalies of the multi-normal protocol; default the upper
        half of the classes (5-9 for ten classes, as in Lee & Lee's Test 2).
    max_normal_classes : int, default=5
        Multi-normal: normal classes ``0..k-1`` for ``k = 1..max_normal_classes``.
    image_shape : tuple or "tabular", optional
        The rows' image shape, for the detectors (see :class:`Task`).

    Raises
    ------
    ValueError
        For a class that is not in ``y_train``, a normal class (one-vs-all,
        contaminated) that is not in ``y_test`` or is its only class, a split the data cannot give
        (see :func:`skgeoad.datasets.contaminated`), or no class left to be
        normal in the multi-normal protocol.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_rows("digits")
    >>> tasks = make_tasks("digits", "multi-normal", X_train, y_train, X_test, y_test)
    >>> [(task.key, task.info["normal_classes"]) for task in tasks[:2]]
    [(1, [0]), (2, [0, 1])]
    """
    labels = np.unique(y_train).tolist()  # sorted; Python ints or strings
    if max_train is not None and max_train < 1:
        raise ValueError(f"max_train must be None or at least 1, got {max_train}.")
    if classes is not None:
        datasets._check_classes(y_train, classes, "classes", "y_train")
    if protocol in ("one-vs-all", "contaminated"):
        test_labels = np.unique(y_test).tolist()
        for c in classes or labels:
            if c not in test_labels:
                raise ValueError(
                    f"normal class {c} is not in y_test: AUROC needs normal test samples "
                    f"(y_test's classes are {', '.join(map(str, test_labels))})."
                )
            if len(test_labels) < 2:
                raise ValueError(
                    f"y_test holds normal class {c} only: AUROC needs anomalous test samples too."
                )
    rng = np.random.default_rng(0)
    tasks = []
    if protocol == "one-vs-all":
        for c in classes or labels:
            train = _subsample(np.flatnonzero(y_train == c), max_train, rng)
            tasks.append(Task(
                dataset, protocol, c, X_train[train], X_test, y_test == c, image_shape=image_shape
            ))  # fmt: skip
    elif protocol == "contaminated":
        for c in classes or labels:
            X_mixed, clean = datasets.contaminated(
                X_train, y_train, c, contamination, max_normal=max_train,
                random_state=labels.index(c),  # the class's rank: the class itself for 0..k-1
            )  # fmt: skip
            info = {"contamination": contamination, "n_anomalies_in_train": int((~clean).sum())}
            tasks.append(Task(
                dataset, protocol, c, X_mixed, X_test, y_test == c, info=info,
                image_shape=image_shape,
            ))  # fmt: skip
    elif protocol == "multi-normal":
        anomalies = list(anomaly_classes) if anomaly_classes else labels[len(labels) // 2 :]
        candidates = [c for c in labels if c not in anomalies]
        if not candidates:
            raise ValueError(f"No class left to be normal: anomaly_classes {anomalies} are all.")
        for k in range(1, min(max_normal_classes, len(candidates)) + 1):
            normal = candidates[:k]
            X_normal, y_normal, X_eval, is_normal = datasets.multi_normal(
                X_train, y_train, X_test, y_test, normal, anomalies
            )
            keep = np.concatenate([_subsample(np.flatnonzero(y_normal == c), max_train, rng) for c in normal])
            info = {"normal_classes": normal, "anomaly_classes": anomalies}
            tasks.append(Task(
                dataset, protocol, k, X_normal[keep], X_eval, is_normal,
                fit_params={"cluster_labels": y_normal[keep]}, info=info, image_shape=image_shape,
            ))  # fmt: skip
    else:
        raise ValueError(f"Unknown protocol {protocol!r}; choose from {PROTOCOLS}.")
    return tasks
