"""Each detector's fit and score against a bare torch loop doing the same network work.

For every detector, side by side in one process:

* the detector with its defaults (``mixed_precision="auto"``, channels-last: the
  fastest configuration of this hardware) and a bare torch loop
  (``bare_loop.py``) doing the same training steps and inference passes on the
  same networks in the same configuration: the ratio bare / detector is the
  detector's efficiency (1.0 = no overhead; the bare loop has no data
  handling, transformations, clustering or scores);
* the same detector in float32 NCHW (``mixed_precision=False`` and
  ``skgeoad.config_context(channels_last=False)``), what skgeoad computed in
  before bf16 and channels-last: the speed-up.

Budget (defaults; random images, since throughput does not depend on what
they show; one seed):

* ``geometric``: 32x32 grey, 300 training / 200 test images, WRN-10-1, the
  72 transformations, 1 epoch, batch 128;
* ``subcluster``: 28x28 grey, 1,000 training images in 5 given sub-clusters,
  500 test, the small CNN, 5 epochs, the default rule (max softmax);
* ``icae``: 28x28 grey, 2,000 training / 500 test images, the paper's MLP
  autoencoder, 10 epochs, re-selection every 5 (its distribution clustering
  and mixtures are in its fit, and not in the bare loop);
* ``adgan``: 32x32 grey, 256 training / 32 test images, the DCGAN networks,
  WGAN-GP, 200 critic steps, 8 latent seeds x 5 steps of the latent search
  (``search="latent"``; the default joint search is timed for the speed-up
  only: its bare loop would be the same vmapped code).

    python benchmarks/throughput.py [--detectors geometric,subcluster,icae,adgan] [--threads N]
"""

import argparse
import time

import numpy as np
import torch

from bare_loop import BareLoop, steps
from skgeoad import (
    ADGANDetector,
    GeometricTransformDetector,
    IterativeClusterAEDetector,
    SubClusterDetector,
    config_context,
)
from skgeoad._torch import native_bf16
from skgeoad.networks import DCGANCritic, DCGANGenerator, MLPAutoencoder, SmallCNN, WideResNet


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def fit_and_score(detector, X_train, X_test, fit_params=None):
    fit_s = timed(detector.fit, X_train, **(fit_params or {}))
    return fit_s, timed(detector.score_samples, X_test)


# -- the network work of each detector's fit and scoring, replayed bare ------------


def geometric_bare(loop, detector, n_train, n_test, side):
    """Training steps, validation losses, the Dirichlet pass and the held-out and test
    passes of a fitted GeometricTransformDetector."""
    k, T, bs = detector.widen_factor, detector.n_transforms_, detector.batch_size
    n_val = len(detector.validation_indices_)
    n_fit = n_train - n_val
    network = loop.network(WideResNet(1, T, detector.depth, k))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=5e-4)
    images, labels = loop.batch(bs, 1, side, side), torch.randint(0, T, (bs,), device=loop.device)
    train = loop.train(
        network, optimizer, lambda net: torch.nn.functional.cross_entropy(net(images).float(), labels),
        detector.epochs_ * steps(n_fit * T, bs),
    )
    pass_size = max(1, detector._inference_batch_size() // T) * T
    big = loop.batch(max(pass_size, bs), 1, side, side)

    def forward(n):
        features = network.forward_features(big[:n])
        torch.log_softmax(network.forward_head(features).float(), 1)

    network.eval()
    validation = loop.infer(forward, detector.epochs_ * n_val * T, bs)
    passes = loop.infer(forward, (n_fit + n_val) * T, pass_size)
    score = loop.infer(forward, n_test * T, pass_size)
    return train + validation + passes, score


def subcluster_bare(loop, detector, n_train, n_test, side):
    """Training, validation losses, the reference features and the held-out scores by
    every rule (ODIN: a forward, an input gradient and a forward) of a SubClusterDetector."""
    bs, n_classes = detector.batch_size, len(detector.clusters_)
    n_val = len(detector.validation_indices_)
    n_fit = n_train - n_val
    network = loop.network(SmallCNN(1, n_classes))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    images, labels = loop.batch(bs, 1, side, side), torch.randint(0, n_classes, (bs,), device=loop.device)
    train = loop.train(
        network, optimizer, lambda net: torch.nn.functional.cross_entropy(net(images).float(), labels),
        detector.epochs * steps(n_fit, bs),
    )
    big = loop.batch(4 * bs, 1, side, side)

    def forward(n):
        torch.softmax(network(big[:n]).float(), 1)

    network.eval()
    validation = loop.infer(forward, detector.epochs * n_val, bs)
    passes = loop.infer(forward, n_fit + 3 * n_val, 4 * bs)  # reference; msp, kl and knn rules

    def odin():
        for start in range(0, n_val, 4 * bs):
            x = big[: min(4 * bs, n_val - start)].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(network(x) / 1000.0, torch.zeros(len(x), dtype=torch.long, device=loop.device))
            (gradient,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                network(x - 0.0014 * gradient.sign())

    odin_s = loop.timed(odin)  # in float32 whatever the loop's precision, as the policy says
    score = loop.infer(forward, n_test, 4 * bs)
    return train + validation + passes + odin_s, score


def icae_bare(loop, detector, n_train, n_test, side):
    """The autoencoder's training on each epoch's subset, its validation losses and the
    encodings of every re-selection, the held-out scores and the test scores."""
    bs, n_features = detector.batch_size, side * side
    n_val = len(detector.validation_indices_)
    n_fit = n_train - n_val
    network = loop.network(MLPAutoencoder(n_features, tuple(detector.hidden_layer_sizes), output="sigmoid"))
    optimizer = torch.optim.Adam(network.parameters(), lr=detector.learning_rate)
    batch = torch.rand(bs, n_features, device=loop.device)
    train_steps = sum(steps(record["n_selected"], bs) for record in detector.history_)
    train = loop.train(network, optimizer, lambda net: (net(batch) - batch).pow(2).mean(1).sum(), train_steps)
    big = torch.rand(4 * bs, n_features, device=loop.device)

    def forward(n):
        code = network.encode(big[:n])
        torch.nn.functional.cosine_similarity(big[:n], network.decode(code).float(), dim=1)

    network.eval()
    validation = loop.infer(forward, len(detector.history_) * n_val, bs)
    passes = loop.infer(forward, detector.n_rounds_ * n_fit + n_val, 4 * bs)
    score = loop.infer(forward, n_test, 4 * bs)
    return train + validation + passes, score


def adgan_bare(loop, detector, n_train, n_test, side):
    """WGAN-GP's critic and generator steps and the latent searches of the held-out and
    test samples (``search="latent"``) of an ADGANDetector."""
    bs, latent, width = detector.batch_size, detector.latent_dim_, detector.conv_width
    generator = loop.network(DCGANGenerator(latent, 1, side, base_width=width))
    critic = loop.network(DCGANCritic(1, side, base_width=width))
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.0, 0.9))
    c_optimizer = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    n_val = len(detector.validation_indices_)
    n_fit = n_train - n_val
    real = loop.batch(bs, 1, side, side)
    n_critic_steps = detector.epochs_ * steps(n_fit, bs)

    def critic_loss(net):
        with torch.no_grad():
            fake = generator(torch.randn(bs, latent, device=loop.device))
        loss = net(fake).float().mean() - net(real).float().mean()
        mix = torch.rand(bs, 1, 1, 1, device=loop.device)
        points = (mix * real + (1 - mix) * fake.float()).requires_grad_(True)
        (gradient,) = torch.autograd.grad(net(points).sum(), points, create_graph=True)
        return loss + 10.0 * ((gradient.flatten(1).norm(dim=1) - 1) ** 2).mean()

    generator.train()
    train = loop.train(critic, c_optimizer, critic_loss, n_critic_steps)
    train += loop.train(
        generator, g_optimizer,
        lambda net: -critic(net(torch.randn(bs, latent, device=loop.device))).float().mean(),
        n_critic_steps // detector.n_critic,
    )  # fmt: skip
    generator.eval()
    critic.eval()
    seeds = torch.randn(detector.n_seeds, latent, device=loop.device)

    def search(n_samples):
        # Full precision, as the precision policy keeps every search.
        n_pairs = n_samples * detector.n_seeds
        targets = real[:1].expand(n_pairs, -1, -1, -1)
        z = seeds.repeat(n_samples, 1).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=detector.latent_lr, betas=(0.5, 0.999))
        for _ in range(detector.n_search_steps):
            loss = ((generator(z) - targets) ** 2).flatten(1).sum(1)
            (z.grad,) = torch.autograd.grad(loss.sum(), z)
            optimizer.step()
        with torch.no_grad():
            ((generator(z) - targets) ** 2).flatten(1).sum(1)

    n_calibration = min(n_val, detector.max_offset_samples)
    calibration = loop.timed(search, n_calibration)
    return train + calibration, loop.timed(search, n_test)


DETECTORS = {
    # name: (class, parameters, image side, n_train, n_test, fit parameters, bare replay)
    "geometric": (GeometricTransformDetector, dict(widen_factor=1, epochs=1), 32, 300, 200, geometric_bare),
    "subcluster": (SubClusterDetector, dict(epochs=5), 28, 1000, 500, subcluster_bare),
    "icae": (IterativeClusterAEDetector, dict(epochs=10, reselect_every=5), 28, 2000, 500, icae_bare),
    "adgan": (
        ADGANDetector,
        dict(epochs=200, n_seeds=8, n_search_steps=5, search="latent", max_offset_samples=32),
        32, 256, 32, adgan_bare,
    ),  # fmt: skip
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    best = BareLoop(device, bf16=native_bf16(device), channels_last=True)
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"fastest configuration here: {best.describe()}; baseline: float32, NCHW"
    )
    header = f"{'detector':11} {'budget':44} {'':6} {'detector s':>10} {'bare s':>8} {'ratio':>6} {'fp32 NCHW s':>12} {'speed-up':>8}"
    print(header)
    rng = np.random.default_rng(0)
    for name in args.detectors.split(","):
        cls, params, side, n_train, n_test, replay = DETECTORS[name]
        X_train = rng.uniform(size=(n_train, side, side))
        X_test = rng.uniform(size=(n_test, side, side))
        fit_params = {"cluster_labels": rng.integers(0, 5, n_train)} if name == "subcluster" else None
        detector = cls(device=args.device, random_state=0, **params)
        fast = fit_and_score(detector, X_train, X_test, fit_params)
        bare = replay(best, detector, n_train, n_test, side)
        with config_context(channels_last=False):
            reference = cls(device=args.device, random_state=0, mixed_precision=False, **params)
            slow = fit_and_score(reference, X_train, X_test, fit_params)
        extra = ""
        if name == "adgan":
            joint = dict(params, search="joint")
            detector = cls(device=args.device, random_state=0, **joint).fit(X_train)
            joint_fast = timed(detector.score_samples, X_test)
            with config_context(channels_last=False):
                reference = cls(device=args.device, random_state=0, mixed_precision=False, **joint).fit(X_train)
                joint_slow = timed(reference.score_samples, X_test)
            extra = f"  (joint search: score {joint_fast:.2f} s vs fp32 NCHW {joint_slow:.2f} s, {joint_slow / joint_fast:.2f}x)"
        budget = f"{n_train}/{n_test} {side}x{side}, " + ", ".join(f"{k}={v}" for k, v in params.items())
        for i, what in enumerate(("fit", "score")):
            print(
                f"{name if i == 0 else '':11} {budget[:44] if i == 0 else '':44} {what:6} {fast[i]:10.2f} "
                f"{bare[i]:8.2f} {bare[i] / fast[i]:6.2f} {slow[i]:12.2f} {slow[i] / fast[i]:7.2f}x",
                flush=True,
            )
        if extra:
            print(extra, flush=True)


if __name__ == "__main__":
    main()
