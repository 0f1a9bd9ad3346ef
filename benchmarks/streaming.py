"""Resident against streamed data: the cost of bounding device memory by the batch.

Budget (defaults, CPU): Fashion-MNIST class 0, 1,000 training images, 2,000
test images scored; GEOM with WRN-10-1, the 72 transformations, 1 epoch;
SubCluster (k-means sub-clusters) 5 epochs; IterativeClusterAE 10 epochs;
ADGAN 20 epochs, latent search, 8 seeds, 200 test images. Each detector is
fitted and scored twice with the same seed: data resident on the device (the
default when it fits ``device_data_bytes``) and streamed batch by batch
(``device_data_bytes=0``). Prints seconds and whether the scores are
bit-identical.

    python benchmarks/streaming.py [--n-train 1000] [--n-test 2000]
"""

import argparse
import time

import numpy as np

from skgeoad import (
    ADGANDetector,
    GeometricTransformDetector,
    IterativeClusterAEDetector,
    SubClusterDetector,
    config_context,
)
from skgeoad.datasets import load_fashion_mnist

DETECTORS = {
    "geom": (GeometricTransformDetector, dict(widen_factor=1, epochs=1), None),
    "subcluster": (SubClusterDetector, dict(epochs=5), None),
    "icae": (IterativeClusterAEDetector, dict(epochs=10), None),
    "adgan": (ADGANDetector, dict(epochs=20, search="latent", n_seeds=8), 200),
}


def timed(detector, X_train, X_test):
    start = time.perf_counter()
    detector.fit(X_train)
    fitted = time.perf_counter()
    scores = detector.score_samples(X_test)
    return fitted - start, time.perf_counter() - fitted, scores


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=2000)
    args = parser.parse_args()
    X_train, y_train, X_test, _ = load_fashion_mnist()
    X_train, X_test = X_train[y_train == 0][: args.n_train], X_test[: args.n_test]
    print(f"{'detector':11} {'fit s resident/streamed':>24} {'score s resident/streamed':>26}  identical")
    for name, (estimator, params, n_test) in DETECTORS.items():
        test = X_test[:n_test]
        resident = timed(estimator(device="cpu", random_state=0, **params), X_train, test)
        with config_context(device_data_bytes=0):
            streamed = timed(estimator(device="cpu", random_state=0, **params), X_train, test)
        print(
            f"{name:11} {resident[0]:11.1f} / {streamed[0]:<10.1f} {resident[1]:12.1f} / {streamed[1]:<11.1f}"
            f"  {np.array_equal(resident[2], streamed[2])}",
            flush=True,
        )


if __name__ == "__main__":
    main()
