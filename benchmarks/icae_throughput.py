"""Where IterativeClusterAEDetector spends its time, against a bare torch loop.

Budget (defaults): 5,000 training and 1,000 test images of 28x28 (Fashion-
MNIST when its files are found, else uniform noise), the paper's raw-pixel
MLP autoencoder [512, 256, 128, 60, 10], 20 epochs, a re-selection every 10,
batch 128, CPU. The bare loop trains the same autoencoder with the same
optimiser and batch size on as many samples as the detector trained on (the
sum of its subset sizes over the epochs), then runs as many forward passes as
the detector's encodings and scoring; the ratio bare / detector is the
efficiency of the training and inference the two share (1.0 = no overhead).
Clustering and the mixtures are timed apart: the bare loop has none.

    python benchmarks/icae_throughput.py [--n-train 5000] [--epochs 20] [--threads 2]
"""

import argparse
import time

import numpy as np
import torch

from bare_loop import BareLoop
from skgeoad import IterativeClusterAEDetector
from skgeoad.networks import MLPAutoencoder


def load_images(n_train, n_test):
    try:
        from skgeoad.datasets import load_fashion_mnist

        X_train, _, X_test, _ = load_fashion_mnist()
        return X_train[:n_train] / 255.0, X_test[:n_test] / 255.0, "Fashion-MNIST"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        return rng.uniform(size=(n_train, 28, 28)), rng.uniform(size=(n_test, 28, 28)), "uniform noise"


def bare_loop(n_trained, n_forward, batch_size, hidden, bf16):
    """The shared bare loop (bare_loop.py) on the same autoencoder, in the detector's precision."""
    loop = BareLoop("cpu", bf16=bf16, channels_last=True)
    network = loop.network(MLPAutoencoder(784, hidden, output="sigmoid"))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    batch = torch.rand(batch_size, 784)
    train_seconds = loop.train(network, optimizer, lambda net: (net(batch) - batch).pow(2).mean(), n_trained // batch_size)
    network.eval()
    chunk = torch.rand(4 * batch_size, 784)

    def forward(n):
        torch.nn.functional.cosine_similarity(chunk[:n], network(chunk[:n]).float(), dim=1)

    return train_seconds, loop.infer(forward, n_forward, len(chunk))


def timed(cls, name, totals):
    """Wrap ``cls.name`` to add its run time to ``totals[name]``."""
    method = getattr(cls, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - start

    setattr(cls, name, wrapper)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hidden = (512, 256, 128, 60, 10)

    X_train, X_test, source = load_images(args.n_train, args.n_test)
    print(f"{args.n_train} train / {args.n_test} test 28x28 images ({source}), {args.threads} threads")

    totals = {}
    for name in ("_initial_selection", "_reselect", "_encode"):
        timed(IterativeClusterAEDetector, name, totals)
    detector = IterativeClusterAEDetector(
        hidden_layer_sizes=hidden, epochs=args.epochs, batch_size=args.batch_size, device="cpu", random_state=0
    )
    start = time.perf_counter()
    detector.fit(X_train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    detector.score_samples(X_test)
    score_seconds = time.perf_counter() - start

    n_trained = sum(h["n_selected"] for h in detector.history_)
    # Every re-selection and the training scores encode all of X_train.
    n_forward = (detector.n_rounds_ + 1) * args.n_train
    bare_train, bare_forward = bare_loop(n_trained, n_forward, args.batch_size, hidden, detector.mixed_precision_)
    bare_score = bare_forward * args.n_test / n_forward

    # _reselect includes its _encode; the last _encode call is scoring.
    fit_encode = totals["_encode"] - score_seconds
    mixtures = totals["_reselect"] - (fit_encode - fit_encode / (detector.n_rounds_ + 1))
    train_part = fit_seconds - totals["_initial_selection"] - totals["_reselect"] - fit_encode / (detector.n_rounds_ + 1)
    print(f"fit: {fit_seconds:.2f} s ({detector.n_rounds_} re-selections, {n_trained} samples trained on)")
    print(f"  initial distribution clustering: {totals['_initial_selection']:.2f} s")
    print(f"  mixtures of the re-selections: {mixtures:.2f} s")
    print(f"  encodings of all X: {fit_encode:.2f} s, bare {bare_forward:.2f} s -> ratio {bare_forward / fit_encode:.2f}")
    print(f"  training: {train_part:.2f} s, bare {bare_train:.2f} s -> ratio {bare_train / train_part:.2f}")
    print(f"  train throughput: detector {n_trained / train_part:.0f} img/s, bare {n_trained / bare_train:.0f} img/s")
    print(f"score: {score_seconds:.3f} s, bare {bare_score:.3f} s -> ratio {bare_score / score_seconds:.2f}")


if __name__ == "__main__":
    main()
