"""File size and save / load seconds of skgeoad.save / skgeoad.load against joblib.dump / load.

Budget: each detector with default settings (``device="cpu"``) fitted on the
benchmark's training half of one digit (digit 0, 89 images of 8x8; SubCluster
with its k-means sub-clusters), plus GEOM with the quick settings of the
examples (the four rotations, WRN-10-1). Each object is written to and read
from a local temporary folder ``--repeats`` times; the median seconds are
printed (the OS page cache holds the files: this times serialisation, not the
disk). Loading is to the CPU; the loaded model's scores are checked equal.

    python benchmarks/persistence.py [--repeats 5] [--detectors geom,geom-quick,subcluster,icae,adgan]
"""

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np

import skgeoad
from skgeoad.datasets import load_digits_split

DETECTORS = {
    "geom": lambda: skgeoad.GeometricTransformDetector(),
    "geom-quick": lambda: skgeoad.GeometricTransformDetector(transformations="rotations", widen_factor=1, epochs=10),
    "subcluster": lambda: skgeoad.SubClusterDetector(),
    "icae": lambda: skgeoad.IterativeClusterAEDetector(),
    "adgan": lambda: skgeoad.ADGANDetector(),
}


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    args = parser.parse_args()
    X_train, y_train, X_test, _ = load_digits_split()
    X_fit, X_rows = X_train[y_train == 0], X_test[:50]
    folder = Path(tempfile.mkdtemp())
    print(f"{'detector':<11} {'fit s':>7} | {'save KiB':>9} {'save s':>8} {'load s':>8} | "
          f"{'joblib KiB':>10} {'dump s':>8} {'load s':>8}")  # fmt: skip
    for name in args.detectors.split(","):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            detector = DETECTORS[name]().set_params(device="cpu", random_state=0).fit(X_fit)
        fit_seconds = time.perf_counter() - start
        expected = detector.score_samples(X_rows) if name != "adgan" else None
        ours, theirs = folder / f"{name}.skgeoad", folder / f"{name}.joblib"
        save_s, _ = median_seconds(lambda: skgeoad.save(detector, ours), args.repeats)
        load_s, loaded = median_seconds(lambda: skgeoad.load(ours), args.repeats)
        dump_s, _ = median_seconds(lambda: joblib.dump(detector, theirs), args.repeats)
        jload_s, _ = median_seconds(lambda: joblib.load(theirs), args.repeats)
        if expected is not None:
            assert np.array_equal(loaded.score_samples(X_rows), expected)
        print(f"{name:<11} {fit_seconds:7.1f} | {ours.stat().st_size / 1024:9.0f} {save_s:8.4f} {load_s:8.4f} | "
              f"{theirs.stat().st_size / 1024:10.0f} {dump_s:8.4f} {jload_s:8.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
