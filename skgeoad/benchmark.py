"""The one-vs-all benchmark and the ``skgeoad-benchmark`` command.

One class of a data set is "normal": each detector is fitted on that class's
training images and scores the (possibly subsampled) test set; AUROC and
AUPR treat the normal test images as the positive class. The runs are
independent, so the core, :func:`run_one_vs_all`, is a plain loop that a
harness can spread over workers.
"""

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import average_precision_score, roc_auc_score

from . import datasets


def _geometric(**params):
    from .geometric import GeometricTransformDetector

    return GeometricTransformDetector(**params)


def _iforest(**params):
    from sklearn.ensemble import IsolationForest

    return IsolationForest(**params)


def _ocsvm(**params):
    from sklearn.svm import OneClassSVM

    return OneClassSVM(**{"gamma": "scale", **params})


#: Short name -> factory taking the detector's keyword parameters.
DETECTORS = {"geometric": _geometric, "iforest": _iforest, "ocsvm": _ocsvm}

#: Detectors whose constructor takes a ``random_state``.
_SEEDED = {"geometric", "iforest"}


def load_dataset(name, data_home=None):
    """``(X_train, y_train, X_test, y_test, max_pixel)`` for a benchmark data set.

    Fashion-MNIST is zero-padded to 32x32 as in GEOM's protocol.
    """
    if name == "digits":
        return (*datasets.load_digits_split(), 16.0)
    if name == "fashion-mnist":
        X_train, y_train, X_test, y_test = datasets.load_fashion_mnist(data_home)
        return datasets.pad_images(X_train, 2), y_train, datasets.pad_images(X_test, 2), y_test, 255.0
    raise ValueError(f"Unknown data set {name!r}; choose from 'digits', 'fashion-mnist'.")


def subsample(X, y, n, random_state, stratify):
    """At most ``n`` rows of ``(X, y)``, drawn reproducibly (stratified by ``y`` if asked)."""
    if n is None or n >= len(X):
        return X, y
    from sklearn.model_selection import train_test_split

    X_kept, _, y_kept, _ = train_test_split(
        X, y, train_size=n, stratify=y if stratify else None, random_state=random_state
    )
    return X_kept, y_kept


def run_one_vs_all(
    detectors, X_train, y_train, X_test, y_test, classes, *, seeds=(0,), max_train=None,
    on_record=None, progress=True,
):  # fmt: skip
    """Fit and evaluate every detector on every normal class and seed.

    Parameters
    ----------
    detectors : dict of str -> estimator
        Unfitted outlier detectors (cloned for every run) following
        scikit-learn's convention that higher ``score_samples`` is more normal.
    X_train, y_train, X_test, y_test : ndarray
        Images as flat rows scaled to [-1, 1], and their labels.
    classes : iterable of int
        The normal classes to try.
    seeds : iterable of int, default=(0,)
        ``random_state`` of the detectors that take one.
    max_train : int, optional
        Cap on the normal training images, drawn with a fixed seed.
    on_record : callable, optional
        Called with each result record as soon as it exists.

    Returns
    -------
    records : list of dict
        One per detector x class x seed: ``auroc``, ``aupr``, ``fit_seconds``,
        ``score_seconds`` and the run's settings.
    """
    from tqdm.auto import tqdm

    runs = [(c, s, name) for c in classes for s in seeds for name in detectors]
    records = []
    for normal_class, seed, name in tqdm(runs, disable=not progress, desc="runs", leave=False):
        X_normal = X_train[y_train == normal_class]
        if max_train is not None and len(X_normal) > max_train:
            X_normal = X_normal[np.random.default_rng(0).choice(len(X_normal), max_train, replace=False)]
        is_normal = y_test == normal_class
        detector = clone(detectors[name])
        if "random_state" in detector.get_params():
            detector.set_params(random_state=seed)
        start = time.perf_counter()
        detector.fit(X_normal)
        fitted = time.perf_counter()
        scores = detector.score_samples(X_test)
        done = time.perf_counter()
        record = {
            "detector": name,
            "normal_class": int(normal_class),
            "seed": int(seed),
            "auroc": float(roc_auc_score(is_normal, scores)),
            "aupr": float(average_precision_score(is_normal, scores)),
            "fit_seconds": fitted - start,
            "score_seconds": done - fitted,
            "n_train": len(X_normal),
            "n_test": len(X_test),
            "params": {k: repr(v) for k, v in detector.get_params().items()},
        }
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records


def format_table(records, detectors):
    """A Markdown table: AUROC (%) per class and detector, mean, and total seconds."""
    classes = sorted({r["normal_class"] for r in records})
    lines = ["| class | " + " | ".join(detectors) + " |", "|---" * (len(detectors) + 1) + "|"]

    def cell(rows):
        values = [100 * r["auroc"] for r in rows]
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{np.mean(values):.1f}±{np.std(values, ddof=1) / np.sqrt(len(values)):.1f}"

    by_class = {}
    for c in classes:
        means = {d: [r for r in records if r["detector"] == d and r["normal_class"] == c] for d in detectors}
        by_class[c] = means
        lines.append(f"| {c} | " + " | ".join(cell(means[d]) for d in detectors) + " |")
    mean_row = []
    for d in detectors:
        per_class = [np.mean([r["auroc"] for r in by_class[c][d]]) for c in classes if by_class[c][d]]
        mean_row.append(f"**{100 * np.mean(per_class):.1f}**" if per_class else "-")
    lines.append("| mean | " + " | ".join(mean_row) + " |")
    seconds = []
    for d in detectors:
        rows = [r for r in records if r["detector"] == d]
        fit = sum(r["fit_seconds"] for r in rows)
        score = sum(r["score_seconds"] for r in rows)
        seconds.append(f"{fit:.0f} + {score:.0f}")
    lines.append("| fit + score s | " + " | ".join(seconds) + " |")
    return "\n".join(lines)


def _parse_settings(items, detectors):
    """``["geometric.widen_factor=2", ...]`` -> ``{"geometric": {"widen_factor": 2}}``."""
    settings = {name: {} for name in detectors}
    for item in items:
        key, sep, raw = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot or name not in settings:
            raise SystemExit(f"--set expects DETECTOR.PARAM=VALUE with DETECTOR in {detectors}, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        settings[name][param] = value
    return settings


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="skgeoad-benchmark",
        description="One-vs-all anomaly detection benchmark: AUROC per normal class.",
    )
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--data-home", default=None, help="folder with the data set's files")
    parser.add_argument("--detectors", default="geometric,iforest,ocsvm",
                        help=f"comma-separated, from {sorted(DETECTORS)}")  # fmt: skip
    parser.add_argument("--classes", default=None, help="comma-separated normal classes (default: all)")
    parser.add_argument("--max-train", type=int, default=None, help="normal training images per class")
    parser.add_argument("--n-test", type=int, default=None, help="test images (stratified subsample)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per class, seeds 0..N-1")
    parser.add_argument("--set", action="append", default=[], metavar="DETECTOR.PARAM=VALUE",
                        help="detector parameter, e.g. geometric.widen_factor=2")  # fmt: skip
    parser.add_argument("--out", default=None, help="folder for results.json and results.md")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {sorted(DETECTORS)}")
    settings = _parse_settings(args.set, names)
    detectors = {name: DETECTORS[name](**settings[name]) for name in names}

    X_train, y_train, X_test, y_test, max_pixel = load_dataset(args.dataset, args.data_home)
    X_test, y_test = subsample(X_test, y_test, args.n_test, random_state=0, stratify=True)
    # Rows scaled to [-1, 1] as in the papers; every detector gets the same input.
    X_train = X_train.reshape(len(X_train), -1) / max_pixel * 2 - 1
    X_test = X_test.reshape(len(X_test), -1) / max_pixel * 2 - 1
    classes = sorted(int(c) for c in np.unique(y_train)) if args.classes is None else [int(c) for c in args.classes.split(",")]

    budget = (
        f"dataset={args.dataset} classes={classes} max_train={args.max_train} "
        f"n_test={len(X_test)} seeds={args.seeds} settings={settings}"
    )
    print(f"budget: {budget}", flush=True)
    start = time.perf_counter()
    records = run_one_vs_all(
        detectors, X_train, y_train, X_test, y_test, classes,
        seeds=range(args.seeds), max_train=args.max_train,
    )  # fmt: skip
    table = format_table(records, names)
    print(table)
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"budget": budget, "records": records}, indent=1))
        (out / "results.md").write_text(f"Budget: {budget}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
