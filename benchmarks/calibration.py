"""Do thresholds hold on new data? Flagged share of held-out normals, and AUROC, per detector and rule.

Budget: scikit-learn's digits, the benchmark's stratified halves. For each
normal digit, a detector with default settings (``device="cpu"``) is fitted on
that digit's training half (~90 images); ``predict`` is applied to the same
digit's test half (~90 images never seen in fit), whose flagged share should
be about ``contamination`` (0.1); AUROC is measured on the whole test half
(899 images; ADGAN: the digit's test images and 200 others, its scoring being
the expensive part). ``SubClusterDetector`` is fitted on digits 0-2 with their
labels (its own job, several normal classes) and on each digit alone (k-means
sub-clusters). Every score rule of a detector is switched after fit with
``set_params(score_type=...)``.

    python benchmarks/calibration.py [--detectors geom,subcluster,icae,adgan] [--classes 0,1,...]
                                     [--seeds N] [--no-auroc] [--mixed-precision] [--set param=value ...]

The range printed is over tasks and seeds. With ~9 held-out samples a task's
share is a Beta(1, 9)-like draw (standard deviation 0.09): ``--seeds`` averages
over several held-out draws and fits.
"""

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from skgeoad import ADGANDetector, GeometricTransformDetector, IterativeClusterAEDetector, SubClusterDetector
from skgeoad.datasets import load_digits_split

# Each detector is scored under every rule its fit offers (its ``_score_rules``).
DETECTORS = {
    "geom": GeometricTransformDetector,
    "subcluster": SubClusterDetector,
    "subcluster-labels": SubClusterDetector,
    "icae": IterativeClusterAEDetector,
    "adgan": ADGANDetector,
}


def evaluate(name, normal, X_train, y_train, X_test, y_test, params, rng, seed=0, auroc=True):
    estimator = DETECTORS[name]
    fit_kwargs = {}
    train = np.isin(y_train, normal)
    if name == "subcluster-labels":
        fit_kwargs["cluster_labels"] = y_train[train]
    test = np.arange(len(X_test))
    if not auroc:
        test = np.flatnonzero(np.isin(y_test, normal))
    elif name == "adgan":
        others = rng.choice(np.flatnonzero(~np.isin(y_test, normal)), 200, replace=False)
        test = np.sort(np.concatenate([np.flatnonzero(np.isin(y_test, normal)), others]))
    start = time.perf_counter()
    detector = estimator(device="cpu", random_state=seed, **params).fit(X_train[train], **fit_kwargs)
    fit_seconds = time.perf_counter() - start
    rows = []
    for rule in detector._score_rules:
        detector.set_params(score_type=rule)
        labels = detector.predict(X_test[test])
        scores = detector.score_samples(X_test[test])
        is_normal = np.isin(y_test[test], normal)
        rows.append(
            {
                "rule": rule,
                "flagged_normal": float(np.mean(labels[is_normal] == -1)),
                "flagged_train": float(np.mean(detector.predict(X_train[train]) == -1)) if auroc else np.nan,
                "auroc": roc_auc_score(is_normal, scores) if auroc else np.nan,
                "fit_seconds": fit_seconds,
            }
        )
    return rows


def parse_value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="geom,subcluster,subcluster-labels,icae,adgan")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--seeds", type=int, default=1, help="fits per task, random_state 0..N-1")
    parser.add_argument("--no-auroc", action="store_true",
                        help="score only the normal test images (flagged share; no AUROC, no training share)")
    parser.add_argument("--set", nargs="*", default=[], help="extra parameters, param=value")
    args = parser.parse_args()
    params = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    if args.mixed_precision:
        params["mixed_precision"] = True
    X_train, y_train, X_test, y_test = load_digits_split()
    rng = np.random.default_rng(0)
    print(f"{'detector':18} {'rule':10} {'flagged new normals':>20} {'flagged train':>14} {'AUROC':>7} {'fit s':>6}")
    for name in args.detectors.split(","):
        if name == "subcluster-labels":
            tasks = [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
        else:
            tasks = [(int(c),) for c in args.classes.split(",")]
        results = [
            evaluate(name, normal, X_train, y_train, X_test, y_test, params, rng, seed, not args.no_auroc)
            for normal in tasks
            for seed in range(args.seeds)
        ]
        for index in range(len(results[0])):
            column = [result[index] for result in results]
            flagged = [row["flagged_normal"] for row in column]
            print(
                f"{name:18} {column[0]['rule']:10} {np.mean(flagged):8.3f} [{min(flagged):.2f}-{max(flagged):.2f}]"
                f" {np.mean([row['flagged_train'] for row in column]):14.3f}"
                f" {np.mean([row['auroc'] for row in column]):7.4f}"
                f" {np.mean([row['fit_seconds'] for row in column]):6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
