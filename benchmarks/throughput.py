"""Throughput of GeometricTransformDetector against a bare torch loop doing the same work.

Budget (defaults): 200 random 32x32 grey training images, 200 test images,
WRN-10-1, the 72 transformations, 1 epoch, batch 128, CPU. The bare loop
trains the same network on the same number of (already transformed) images
with the same optimiser and batch size, then runs the same number of
inference passes; the ratio bare / detector is the detector's efficiency
(1.0 = no overhead).

    python benchmarks/throughput.py [--widen-factor 4] [--side 32] [--n-train 200]
"""

import argparse
import time

import numpy as np
import torch

from skgeoad import GeometricTransformDetector
from skgeoad.networks import WideResNet


def bare_loop(n_images, side, n_classes, widen_factor, batch_size, n_infer):
    network = WideResNet(1, n_classes, 10, widen_factor)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.randn(batch_size, 1, side, side)
    labels = torch.randint(0, n_classes, (batch_size,))
    network.train()
    start = time.perf_counter()
    for _ in range(n_images // batch_size):
        loss = loss_fn(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - start
    network.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n_infer // (batch_size // n_classes * n_classes)):
            torch.log_softmax(network(images[: batch_size // n_classes * n_classes]), 1)
    return train_seconds, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widen-factor", type=int, default=1)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X_train = rng.uniform(size=(args.n_train, args.side, args.side))
    X_test = rng.uniform(size=(args.n_test, args.side, args.side))
    detector = GeometricTransformDetector(
        widen_factor=args.widen_factor, epochs=1, batch_size=args.batch_size, device="cpu", random_state=0
    )
    start = time.perf_counter()
    detector.fit(X_train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    detector.score_samples(X_test)
    score_seconds = time.perf_counter() - start

    k = detector.n_transforms_
    n_train_images = args.n_train * k
    bare_train, bare_infer_train = bare_loop(n_train_images, args.side, k, args.widen_factor, args.batch_size, n_train_images)
    _, bare_score = bare_loop(0, args.side, k, args.widen_factor, args.batch_size, args.n_test * k)
    bare_fit = bare_train + bare_infer_train
    print(f"budget: {args.n_train} train x {k} transforms x 1 epoch, {args.n_test} test, "
          f"{args.side}x{args.side}, WRN-10-{args.widen_factor}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"fit:   detector {fit_seconds:6.1f} s  bare {bare_fit:6.1f} s  ratio {bare_fit / fit_seconds:.2f}  "
          f"({n_train_images / fit_seconds:.0f} train images/s incl. the Dirichlet pass)")
    print(f"score: detector {score_seconds:6.1f} s  bare {bare_score:6.1f} s  ratio {bare_score / score_seconds:.2f}  "
          f"({args.n_test * k / score_seconds:.0f} images/s)")


if __name__ == "__main__":
    main()
