"""ONNX export: agreement with score_samples, export cost, and onnxruntime against torch.

For each exportable detector and score rule: the largest absolute and
relative difference between onnxruntime's scores and ``score_samples`` on the
test rows, Spearman's rank correlation, the pairs of rows the two put in a
different order and the widest score gap among them (pairs closer than the
rounding differences may swap), the export's seconds, the file size, and the scoring throughput
(rows per second, best of ``--repeats``) of ``detector.score_samples`` (torch,
with its input validation), of the bare torch module
:func:`skgeoad.export.scoring_module` (the exported computation, under
``torch.inference_mode``) and of ``InferenceSession.run`` (onnxruntime), on
the same batches of ``--batch`` rows with the same number of threads.

Budget (defaults): digits (8x8), training on ~90 images of digit 0 (the
benchmark split's training half; IterativeClusterAE on all ten classes, ~900,
SubCluster on digits 0-2 with their labels), scoring the test half (899
images), CPU, ``--threads 1``; small networks and short fits (GEOM: the 72
transformations, WRN-10-1, 2 epochs; IterativeClusterAE: 20 epochs;
SubCluster: the small CNN, 10 epochs; ADGAN: the latent search from 16
seeds, 5 steps, 50 epochs). About five minutes on a 2-core CPU.

    python benchmarks/onnx_export.py [--threads 1] [--batch 256] [--repeats 3]
"""

import argparse
import os
import tempfile
import time

import numpy as np
import onnxruntime
import torch
from scipy.stats import spearmanr

from skgeoad import (
    ADGANDetector,
    GeometricTransformDetector,
    IterativeClusterAEDetector,
    SubClusterDetector,
    export_onnx,
)
from skgeoad.datasets import load_digits_split
from skgeoad.export import scoring_module


def cases(X_train, y_train):
    """(name, fitted detector, score rules) of every exportable detector."""
    quick = dict(device="cpu", random_state=0)
    zeros = X_train[y_train == 0]
    geom = GeometricTransformDetector(transformations="all", widen_factor=1, epochs=2, **quick).fit(zeros)
    yield "GEOM (72 transf., WRN-10-1)", geom, ("dirichlet", "simplified", "knn", "combined")
    icae = IterativeClusterAEDetector(epochs=20, **quick).fit(X_train)
    yield "IterativeClusterAE (MLP)", icae, ("cosine", "mse")
    conv = IterativeClusterAEDetector(epochs=20, network="conv", hidden_layer_sizes=(16,), **quick).fit(X_train)
    yield "IterativeClusterAE (conv)", conv, ("cosine", "mse")
    normal = y_train < 3
    sub = SubClusterDetector(epochs=10, **quick).fit(X_train[normal], cluster_labels=y_train[normal])
    yield "SubCluster (CNN)", sub, ("msp", "kl", "knn", "odin")
    yield "SubCluster (CNN), euclidean", sub.set_params(metric="euclidean"), ("knn",)
    adgan = ADGANDetector(latent_dim=16, epochs=50, n_seeds=16, search="latent", **quick).fit(zeros)
    yield "ADGAN, latent search (16 seeds)", adgan, (None,)


def discordant_pairs(scores, expected):
    """Pairs of rows ordered differently by ``scores`` and ``expected``, and their widest gap in ``expected``."""
    swapped = np.sign(scores[:, None] - scores[None]) != np.sign(expected[:, None] - expected[None])
    gaps = np.abs(expected[:, None] - expected[None])[swapped]
    return int(swapped.sum()) // 2, float(gaps.max()) if len(gaps) else 0.0


def best_rate(score, batches, repeats):
    """Rows per second of ``score`` over ``batches``, best of ``repeats`` passes."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            score(batch)
        best = min(best, time.perf_counter() - start)
    return sum(len(b) for b in batches) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    X_train, y_train, X_test, _ = load_digits_split()
    X_train = X_train.reshape(len(X_train), -1).astype(np.float32)
    X_test = X_test.reshape(len(X_test), -1).astype(np.float32)
    batches = [X_test[i : i + args.batch] for i in range(0, len(X_test), args.batch)]
    print(f"digits, {len(X_test)} test rows, batches of {args.batch}, {args.threads} thread(s), "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    header = ("detector", "rule", "max abs", "max rel", "spearman", "swapped pairs (widest gap)", "export s", "KiB",
              "score_samples rows/s", "torch module rows/s", "ort rows/s", "ort/score_samples")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    directory = tempfile.mkdtemp()
    for name, detector, rules in cases(X_train, y_train):
        for rule in rules:
            if rule is not None:
                detector.set_params(score_type=rule)
            path = os.path.join(directory, "model.onnx")
            start = time.perf_counter()
            export_onnx(detector, path)
            export_seconds = time.perf_counter() - start
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            expected = detector.score_samples(X_test)
            scores = np.concatenate([session.run(["score_samples"], {"X": b})[0] for b in batches])
            difference = np.abs(scores - expected)
            relative = difference / np.maximum(np.abs(expected), 1e-12)
            n_swapped, widest = discordant_pairs(scores, expected)
            torch_rate = best_rate(detector.score_samples, batches, args.repeats)
            module = scoring_module(detector)

            def module_scores(batch, module=module):
                with torch.inference_mode():
                    return module(torch.from_numpy(batch))

            module_rate = best_rate(module_scores, batches, args.repeats)
            ort_rate = best_rate(lambda b, s=session: s.run(["score_samples"], {"X": b}), batches, args.repeats)
            row = (name, rule or "-", f"{difference.max():.1e}", f"{relative.max():.1e}",
                   f"{spearmanr(scores, expected).statistic:.6f}", f"{n_swapped} ({widest:.1e})", f"{export_seconds:.1f}",
                   f"{os.path.getsize(path) / 1024:.0f}", f"{torch_rate:,.0f}", f"{module_rate:,.0f}", f"{ort_rate:,.0f}",
                   f"{ort_rate / torch_rate:.2f}")  # fmt: skip
            print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
