"""float32 against bf16 autocast (the default wherever bf16 is native), every detector and rule.

Budget (defaults, CPU): Fashion-MNIST class 0 (T-shirt/top) as the normal
class, 500 training images, 1,000 test images drawn at random from the test
set (ADGAN: the first 200 of them, and ``n_seeds=8``: its search is the
expensive part). GEOM runs WRN-10-1 (``widen_factor=1``, ~10x faster than
the default WRN-10-4 on a CPU); everything else is at its defaults. Each
detector is fitted twice, ``mixed_precision=False`` and ``True``, with the
same seed; the AUROC difference is the cost of bf16.

    python benchmarks/precision.py [--n-train 500] [--n-test 1000] [--detectors geom,subcluster,icae,adgan]
"""

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from skgeoad import ADGANDetector, GeometricTransformDetector, IterativeClusterAEDetector, SubClusterDetector
from skgeoad.datasets import load_fashion_mnist

DETECTORS = {
    "geom": (
        GeometricTransformDetector, dict(widen_factor=1), ("dirichlet", "simplified", "knn", "combined")
    ),
    "subcluster": (SubClusterDetector, {}, ("msp", "odin", "kl", "knn")),
    "icae": (IterativeClusterAEDetector, {}, ("cosine", "mse")),
    "adgan": (ADGANDetector, dict(n_seeds=8), (None,)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument("--detectors", default="geom,subcluster,icae,adgan")
    args = parser.parse_args()
    X_train, y_train, X_test, y_test = load_fashion_mnist()
    rng = np.random.default_rng(0)
    train = X_train[y_train == args.normal_class][: args.n_train]
    test = np.sort(rng.choice(len(X_test), args.n_test, replace=False))
    X_test, is_normal = X_test[test], y_test[test] == args.normal_class
    print(f"{'detector':12} {'rule':10} {'AUROC fp32':>10} {'AUROC bf16':>10} {'diff':>7} {'fit s fp32/bf16':>16}")
    for name in args.detectors.split(","):
        estimator, params, rules = DETECTORS[name]
        n_test = 200 if name == "adgan" else len(X_test)
        results = {}
        for precision in (False, True):
            start = time.perf_counter()
            detector = estimator(device="cpu", random_state=0, mixed_precision=precision, **params).fit(train)
            seconds = time.perf_counter() - start
            for rule in rules:
                if rule is not None:
                    detector.set_params(score_type=rule)
                auroc = roc_auc_score(is_normal[:n_test], detector.score_samples(X_test[:n_test]))
                results.setdefault(rule, []).append((auroc, seconds))
        for rule, ((full, full_s), (mixed, mixed_s)) in results.items():
            print(
                f"{name:12} {rule or '-':10} {full:10.4f} {mixed:10.4f} {mixed - full:+7.4f} {full_s:7.1f}/{mixed_s:<7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
