"""Anomaly detection with a WGAN and a latent + generator search (ADGAN)."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch.func import functional_call, grad_and_value, vmap

from ._scoring import ADGAN_COMBINED_RULES, combined_normality, scores_to_numpy, standardisation_moments
from ._torch import autocast, batch_bounds, build_module, check_finite_loss, full_precision, fused, progress
from .base import BaseDeepDetector
from .networks import MLP, DCGANCritic, DCGANGenerator
from .networks._init import records_arguments
from .networks.dcgan import dcgan_side

#: Generator copies (parameter values) held at once by the joint search,
#: counting its two Adam moments: bounds the search's memory.
_SEARCH_FLOATS = 2**26

#: Adam's betas in the search, as in the paper.
_SEARCH_BETAS = (0.5, 0.999)

#: Fewest critic steps of the default training length (``epochs=None``):
#: measured on digits 0-4 (~81 training images a class, latent size 64, 8
#: seeds), see the ``epochs`` parameter.
_MIN_CRITIC_STEPS = 6000

#: The scoring rules (``score_type``); the two combined rules average the first two.
SCORE_TYPES = ("reconstruction", "critic", *ADGAN_COMBINED_RULES)

#: The paper's latent size, which ``latent_dim="auto"`` keeps for data of 256
#: features and more.
_PAPER_LATENT_DIM = 256


class ADGANDetector(BaseDeepDetector):
    """Anomaly detection with generative adversarial networks (Deecke et al., 2018).

    A Wasserstein GAN learns to generate the normal data. A test sample is
    normal when the generator can reproduce it: from ``n_seeds`` starting
    points of the latent space, ``n_search_steps`` Adam steps move each latent
    vector, and a private copy of the generator's weights, towards the sample.
    The paper's score is minus the mean final reconstruction error: samples the
    generator cannot reach are anomalies. The combined rules add the critic's
    verdict on the sample (see ``score_type``).

    Parameters
    ----------
    score_type : {"reconstruction", "critic", "combined", "combined_two_sided"}, \
            default="reconstruction"
        ``"reconstruction"``: the paper's score, minus the mean final
        reconstruction error of the search. ``"critic"``: the trained critic's
        output for the sample (one pass, no search), turned so that high means
        normal (``critic_orientation_``). ``"combined"`` (beyond the paper, in
        the spirit of AnoGAN's residual + discrimination score, Schlegl et al.
        2017): the mean of the two, each standardised by the mean and standard
        deviation of its scores on the held-out samples (``score_moments_``).
        ``"combined_two_sided"``: the same, with the critic's standardised
        score counted as its distance from the held-out mean in either
        direction (``-|z|``). The search reaches an anomaly that lies inside
        the generator's range (the upright stroke of a 1 is the middle of an
        8), which the critic still tells apart. But the critic is trained to
        tell the normal images from the generator's, and its value on an
        anomaly is an extrapolation: on digits it ranks anomalies low, on
        Fashion-MNIST (every class, 500 training images, 2,000 critic steps)
        high. The fit turns the critic round where it ranks rotated held-out
        images (proxy anomalies) above the held-out images themselves; that
        fixes the direction on average, but on some classes anomalies fall on
        both sides, which only the two-sided rule counts. Measured (AUROC %,
        see the benchmarks page): on digits (all ten, 3 seeds; the critic was
        never turned) ``"reconstruction"`` 98.6, ``"critic"`` 98.4,
        ``"combined"`` 99.4, ``"combined_two_sided"`` 99.3; on Fashion-MNIST
        (all ten classes, one seed, 2,000 training images a class, 2,000
        critic steps) 85.5, 80.2, 86.9 and 86.3, all behind IsolationForest's
        91.9 at that CPU budget; with 500 images 83.0, 77.0 (23.0 unturned),
        83.8 (72.0 unturned) and 84.5. ``"combined"`` is the best rule but
        on Fashion-MNIST with 500 images, where ``"combined_two_sided"`` is;
        check a rule on your own data before relying on it. The
        default stays the paper's, as every detector's does. The rule is read
        at scoring time:
        ``set_params(score_type=...)`` rescores a fitted detector without
        refitting, with that rule's offset from ``offsets_``.
    latent_dim : int or "auto", default="auto"
        Dimension of the latent space (the paper's ``d'``). ``"auto"``: the
        paper's 256, or the number of features (pixels times channels) when
        that is smaller, so never more latent dimensions than the data has.
        The paper asks for ``d' << d``; with a latent space larger than the
        image, the generator reaches any image, anomalies included. On digits
        (8x8 = 64 pixels; digits 0-4, ~81 training images a class, the
        default training, 8 seeds, latent search) the mean AUROC was 98.9
        with 32 latent dimensions, 99.4 with 64, 99.1 with 128 and 98.5 with
        256. Measured on images only: for tabular rows of fewer than 256
        features, "auto" is their number of features, not tuned.
    gan : {"wgan-gp", "wgan"}, default="wgan-gp"
        ``"wgan-gp"``: the critic's Lipschitz constraint by a gradient penalty
        (Gulrajani et al.), Adam with ``learning_rate`` and betas (0, 0.9),
        as in the code the GEOM authors used for their ADGAN baseline.
        ``"wgan"``: the original weight clipping to ``[-clip_value,
        clip_value]`` with RMSprop (Arjovsky et al.), the paper's WGAN.
    n_critic : int, default=2
        Critic steps per generator step (the GEOM authors' code; the WGAN
        papers use 5).
    gp_weight : float, default=10.0
        Gradient penalty coefficient (WGAN-GP's usual value; the GEOM
        authors' code used 20).
    clip_value : float, default=0.01
        Weight clipping bound (``gan="wgan"``).
    epochs : int, default=None
        Passes of the critic over the training data. ``None`` trains for 100
        epochs (as the GEOM paper trains its ADGAN baseline's GAN) or 6,000
        critic steps, whichever is more: on a small training set 100 epochs
        are far too few updates for a GAN. On digits 0-4 (~81 training images
        a class, latent size 64, 8 seeds) 2,000 critic steps gave a mean AUROC of
        94.8 (joint search), 6,000 steps 99.4 (joint or latent search) and
        12,000 steps 99.5 (latent search).
    batch_size : int, default=64
        Samples per critic step.
    learning_rate : float, default=1e-4
        Learning rate of both networks (RMSprop uses 5e-5 for ``"wgan"``
        unless this is changed from its default).
    n_seeds : int, default=64
        Latent starting points per test sample (the paper's ``n_seed``; the
        GEOM authors' re-implementation uses 8). They are drawn once, at fit
        time, from ``random_state``, so a sample's score never depends on the
        other samples scored with it.
    n_search_steps : int, default=5
        Adam steps of the search (the paper's ``k``).
    search : {"joint", "latent"}, default="joint"
        ``"joint"`` optimises each latent vector *and its own copy of the
        generator's weights*, reset to the trained ones for every sample (the
        paper's Algorithm 1). ``"latent"`` moves the latent vectors only, with
        the generator fixed (AnoGAN-style): the same number of network passes
        but no per-copy weights, so several times faster and lighter in
        memory, usually at some cost in accuracy.
    latent_lr : float, default=0.25
        Adam's learning rate for the latent vectors (betas 0.5, 0.999, as in
        the paper).
    generator_lr : float, default=5e-5
        Adam's learning rate for the generator copies (``search="joint"``).
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Hidden layers of the generator and critic MLPs (tabular data).
    conv_width : int, default=64
        Channels of the DCGAN networks' hidden layer of highest resolution
        (images): the generator's last hidden layer and the critic's first
        layer; the widths double at each halving of the resolution (32x32
        images: 64 -> 128 -> 256 with the default, DCGAN's). Halving it cut
        a training step to about a third of its time and the search to 0.4
        (32x32 images, one CPU thread); on Fashion-MNIST a GAN of width 32
        trained three times as long was no better (see the benchmarks page).
    max_offset_samples : int, default=512
        Held-out samples (training samples with ``validation_fraction=0``)
        scored to set ``offset_``, a random subset when there are more:
        scoring costs as much per sample as at test time.
    image_shape, contamination, validation_fraction, device, mixed_precision, verbose, random_state
        As in :class:`GeometricTransformDetector`.

    Attributes
    ----------
    generator_ : torch.nn.Module
        The trained generator (``critic_`` is kept too, for inspection).
    critic_ : torch.nn.Module
    latent_dim_ : int
        The latent size used (``latent_dim`` with ``"auto"`` resolved).
    latent_seeds_ : torch.Tensor of shape (n_seeds, latent size)
        The search's starting points, shared by all samples.
    epochs_ : int
        Epochs trained.
    history_ : list of dict
        Per epoch: the critic's Wasserstein estimate (``wasserstein``), the
        ``generator_loss`` and, with held-out samples,
        ``validation_wasserstein``: the critic's estimate between the held-out
        samples and images from ``latent_seeds_``; far below ``wasserstein``,
        the critic has learned the training samples themselves.
    score_moments_ : ndarray of shape (2, 2)
        Mean and standard deviation of the ``"reconstruction"`` and
        ``"critic"`` scores (rows, in that order) of the held-out samples (of
        the training samples with ``validation_fraction=0``), which the
        two combined rules standardise them with.
    critic_orientation_ : {1, -1}
        The sign the critic's output is scored with (``"critic"`` and the
        combined rules): -1 where the critic ranked rotated held-out images
        (proxy anomalies) above the held-out images themselves, so that a
        high critic score means normal either way. Always 1 for rows that are
        not images. See ``score_type``.
    offsets_ : dict
        ``offset_`` of each ``score_type``: the ``contamination`` quantile of
        the held-out samples' scores.
    offset_ : float
        Offset of the ``score_type`` the detector was fitted with.
    validation_indices_, image_shape_, device_, n_features_in_
        As in :class:`GeometricTransformDetector`.

    See Also
    --------
    GeometricTransformDetector : Usually more accurate and cheaper to score.

    Notes
    -----
    Images go through DCGAN networks on a square of side ``4 * 2^m``: an
    image of another size is padded with the background value -1 (8x8 stays
    8x8, 28x28 becomes 32x32, as GEOM's protocol pads (Fashion-)MNIST) and
    the reconstruction error covers the padded square. Tabular rows use MLPs.

    Scoring is the expensive part: ``n_seeds * (n_search_steps + 1)``
    generator passes per sample (``"critic"`` alone needs one critic pass), and with ``search="joint"`` as many private
    copies of the generator's weights. All (sample, seed) searches of a chunk
    run at once, vectorised with ``torch.func.vmap`` over the weight copies.

    References
    ----------
    .. [1] L. Deecke, R. Vandermeulen, L. Ruff, S. Mandt and M. Kloft, "Image
       Anomaly Detection with Generative Adversarial Networks", ECML-PKDD 2018.
    .. [2] I. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.
    .. [3] T. Schlegl, P. Seeböck, S. M. Waldstein, U. Schmidt-Erfurth and G. Langs,
       "Unsupervised Anomaly Detection with Generative Adversarial Networks to Guide
       Marker Discovery", IPMI 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skgeoad import ADGANDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> detector = ADGANDetector(latent_dim=16, epochs=30, n_seeds=4, search="latent", random_state=0)
    >>> detector = detector.fit(X[y == 0])
    >>> scores = detector.score_samples(X[:3])   # digits 0, 1, 2
    >>> scores.shape
    (3,)
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "score_type": [StrOptions(set(SCORE_TYPES))],
        "latent_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "gan": [StrOptions({"wgan-gp", "wgan"})],
        "n_critic": [Interval(Integral, 1, None, closed="left")],
        "gp_weight": [Interval(Real, 0, None, closed="left")],
        "clip_value": [Interval(Real, 0, None, closed="neither")],
        "n_seeds": [Interval(Integral, 1, None, closed="left")],
        "n_search_steps": [Interval(Integral, 0, None, closed="left")],
        "search": [StrOptions({"joint", "latent"})],
        "latent_lr": [Interval(Real, 0, None, closed="neither")],
        "generator_lr": [Interval(Real, 0, None, closed="left")],
        "hidden_layer_sizes": [tuple, list],
        "conv_width": [Interval(Integral, 1, None, closed="left")],
        "max_offset_samples": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        score_type="reconstruction",
        latent_dim="auto",
        gan="wgan-gp",
        n_critic=2,
        gp_weight=10.0,
        clip_value=0.01,
        epochs=None,
        batch_size=64,
        learning_rate=1e-4,
        n_seeds=64,
        n_search_steps=5,
        search="joint",
        latent_lr=0.25,
        generator_lr=5e-5,
        hidden_layer_sizes=(128, 128),
        conv_width=64,
        max_offset_samples=512,
        image_shape=None,
        contamination=0.1,
        validation_fraction=0.1,
        device="auto",
        mixed_precision="auto",
        verbose=0,
        random_state=None,
    ):
        self.score_type = score_type
        self.latent_dim = latent_dim
        self.gan = gan
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.clip_value = clip_value
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_seeds = n_seeds
        self.n_search_steps = n_search_steps
        self.search = search
        self.latent_lr = latent_lr
        self.generator_lr = generator_lr
        self.hidden_layer_sizes = hidden_layer_sizes
        self.conv_width = conv_width
        self.max_offset_samples = max_offset_samples
        self.image_shape = image_shape
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.verbose = verbose
        self.random_state = random_state

    def _complete_older_fit(self):
        # Fits from before latent_dim="auto" did not record the size they used.
        if "latent_seeds_" in vars(self) and "latent_dim_" not in vars(self):
            self.latent_dim_ = self.latent_seeds_.shape[1]
        # Fits from before score_type had the reconstruction rule only, and its offset;
        # the other rules need held-out scores they never kept.
        if not {"offsets_", "score_moments_"} & vars(self).keys() and "offset_" in vars(self):
            self.offsets_ = {"reconstruction": self.offset_}
            self.score_type = "reconstruction"
        # Fits from before critic_orientation_ scored with the critic as trained.
        if "critic_" in vars(self) and "critic_orientation_" not in vars(self):
            self.critic_orientation_ = 1

    # -- data layout -------------------------------------------------------

    def _gan_input(self, X, turns=0):
        """Scaled flat tensors -> what the critic sees: padded square images or rows.

        ``turns``: quarter turns of the images before they are padded (a turn
        after padding would move an uneven padding by a pixel).
        """
        images = self._network_input(X)
        if self.image_shape_ is None:
            return images
        images = torch.rot90(images, turns, (2, 3)) if turns else images
        height, width, side = *images.shape[2:], self._side
        if side == height == width:
            return images
        top, left = (side - height) // 2, (side - width) // 2
        padding = (left, side - width - left, top, side - height - top)
        return torch.nn.functional.pad(images, padding, value=-1.0)

    @property
    def _side(self):
        height, width, _ = self.image_shape_
        return dcgan_side(height, width)

    # -- training ----------------------------------------------------------

    def _build(self, generator):
        latent, dtype = self.latent_dim_, self._dtype
        if self.image_shape_ is None:
            n_features, hidden = self.n_features_in_, tuple(self.hidden_layer_sizes)
            make_generator = lambda: MLP(latent, n_features, hidden)  # noqa: E731
            make_critic = lambda: _Critic(MLP(n_features, 1, hidden, batch_norm=False))  # noqa: E731
        else:
            channels, side = self.image_shape_[2], self._side
            width = self.conv_width
            make_generator = lambda: DCGANGenerator(latent, channels, side, base_width=width)  # noqa: E731
            make_critic = lambda: DCGANCritic(channels, side, base_width=width)  # noqa: E731
        return (
            build_module(make_generator, generator, self.device_, dtype),
            build_module(make_critic, generator, self.device_, dtype),
        )

    def _optimizers(self):
        if self.gan == "wgan-gp":
            options = fused(self.device_)
            make = lambda params: torch.optim.Adam(params, lr=self.learning_rate, betas=(0.0, 0.9), **options)  # noqa: E731
        else:
            lr = 5e-5 if self.learning_rate == 1e-4 else self.learning_rate
            make = lambda params: torch.optim.RMSprop(params, lr=lr)  # noqa: E731
        return make(self.generator_.parameters()), make(self.critic_.parameters())

    def _gradient_penalty(self, real, fake, noise):
        """WGAN-GP: ``(||grad_x critic(x)|| - 1)^2`` at random points between real and fake."""
        mix = noise.view(-1, *([1] * (real.dim() - 1)))
        points = (mix * real + (1 - mix) * fake).requires_grad_(True)
        (gradient,) = torch.autograd.grad(self.critic_(points).sum(), points, create_graph=True)
        return ((gradient.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def _fit_tensor(self, X, rng, generator, X_val=None):
        self.latent_dim_ = (
            min(_PAPER_LATENT_DIM, self.n_features_in_) if self.latent_dim == "auto" else self.latent_dim
        )
        self.generator_, self.critic_ = self._build(generator)
        seed = int(rng.integers(np.iinfo(np.int32).max))
        # Latent draws happen on the device, from a generator of its own.
        device_rng = torch.Generator(device=self.device_).manual_seed(seed)
        def draw_latents(n):
            return torch.randn(n, self.latent_dim_, generator=device_rng, device=self.device_, dtype=self._dtype)

        self.latent_seeds_ = draw_latents(self.n_seeds)
        real_data = X.map(self._gan_input)
        g_optimizer, c_optimizer = self._optimizers()
        bounds = batch_bounds(len(X), self.batch_size)
        self.epochs_ = self.epochs or max(100, math.ceil(_MIN_CRITIC_STEPS / len(bounds)))
        self.history_ = []
        self.generator_.train()
        self.critic_.train()
        step = 0
        for epoch in progress(range(self.epochs_), self.verbose, desc="GAN training", unit="epoch"):
            order = torch.randperm(len(X), generator=generator).to(self.device_)
            totals = torch.zeros(2, device=self.device_, dtype=self._dtype)
            n_generator_steps = 0
            for start, stop in bounds:
                real = real_data[order[start:stop]]
                with autocast(self.device_, self.mixed_precision_):
                    with torch.no_grad():
                        fake = self.generator_(draw_latents(len(real)))
                    fake = fake.to(real.dtype)
                    wasserstein = self.critic_(real).float().mean() - self.critic_(fake).float().mean()
                    loss = -wasserstein
                    if self.gan == "wgan-gp":
                        noise = torch.rand(len(real), generator=device_rng, device=self.device_, dtype=self._dtype)
                        loss = loss + self.gp_weight * self._gradient_penalty(real, fake, noise)
                c_optimizer.zero_grad(set_to_none=True)
                loss.float().backward()
                c_optimizer.step()
                if self.gan == "wgan":
                    with torch.no_grad():
                        for parameter in self.critic_.parameters():
                            parameter.clamp_(-self.clip_value, self.clip_value)
                totals[0] += wasserstein.detach().to(self._dtype)
                step += 1
                if step % self.n_critic == 0:
                    with autocast(self.device_, self.mixed_precision_):
                        generator_loss = -self.critic_(self.generator_(draw_latents(len(real)))).float().mean()
                    g_optimizer.zero_grad(set_to_none=True)
                    generator_loss.float().backward()
                    g_optimizer.step()
                    totals[1] += generator_loss.detach().to(self._dtype)
                    n_generator_steps += 1
            wasserstein_mean, generator_mean = totals.tolist()
            record = {
                "epoch": epoch + 1,
                "wasserstein": wasserstein_mean / len(bounds),
                "generator_loss": generator_mean / max(1, n_generator_steps),
            }
            check_finite_loss(record["wasserstein"], epoch + 1, self.learning_rate, "critic's Wasserstein estimate")
            if X_val is not None:
                record["validation_wasserstein"] = self._validation_wasserstein(X_val)
            self.history_.append(record)
        self.generator_.eval()
        self.critic_.eval()
        # The thresholds and the combined rule's standardisation come from the same scores:
        # at most max_offset_samples of the held-out samples (the training samples without).
        calibration = X if X_val is None else X_val
        if len(calibration) > self.max_offset_samples:
            kept = rng.choice(len(calibration), self.max_offset_samples, replace=False)
            calibration = calibration.subset(np.sort(kept))
        self.critic_orientation_ = self._critic_orientation(calibration)
        scores = self._rule_scores(calibration)
        self.score_moments_ = standardisation_moments(*scores.values())
        return self._with_combined(scores)

    @torch.no_grad()
    def _validation_wasserstein(self, X_val):
        """The critic's Wasserstein estimate between held-out samples and the generator's
        images from the fixed latent seeds; far below the training estimate, the critic
        has learned the training samples rather than the normal class."""
        self.critic_.eval()
        self.generator_.eval()
        size = 4 * self.batch_size
        with autocast(self.device_, self.mixed_precision_):
            real = sum(self.critic_(chunk).float().sum() for chunk in X_val.map(self._gan_input).chunks(size))
            fake = self.critic_(self.generator_(self.latent_seeds_)).float().mean()
        self.critic_.train()
        self.generator_.train()
        return float(real / len(X_val) - fake)

    def _calibration_scores(self, X, rng):
        """Every rule's scores of ``X``, one search for all of them."""
        return self._with_combined(self._rule_scores(X))

    # -- scoring -----------------------------------------------------------

    _score_rules = SCORE_TYPES

    def _score_tensor(self, X, rule):
        if rule in ADGAN_COMBINED_RULES:
            self._score_moments(rule)  # an older fit without them fails before the search
        if rule == "reconstruction":
            return self._reconstruction_scores(X)
        if rule == "critic":
            return self._critic_scores(X)
        return self._with_combined(self._rule_scores(X))[rule]

    def _rule_scores(self, X):
        """``{"reconstruction": ..., "critic": ...}`` scores of ``X``, the rules the combined rules average."""
        return {"reconstruction": self._reconstruction_scores(X), "critic": self._critic_scores(X)}

    def _with_combined(self, scores):
        """``scores`` with both combined rules' added, standardised by ``score_moments_``."""
        first, second = (torch.as_tensor(values) for values in scores.values())
        moments = torch.as_tensor(self._score_moments())
        combined = {
            rule: combined_normality(first, second, moments, two_sided).numpy()
            for rule, two_sided in ADGAN_COMBINED_RULES.items()
        }
        return {**scores, **combined}

    def _score_moments(self, rule="combined"):
        """``score_moments_``, which detectors fitted before ``score_type`` existed lack."""
        return self._fitted_by_this_version("score_moments_", rule, "held-out score moments")

    @torch.no_grad()
    def _critic_scores(self, X):
        """The critic's output per sample, times ``critic_orientation_``: one pass, in full
        precision (a cheap pass, and the held-out standardisation reads differences below
        bf16's resolution)."""
        return self.critic_orientation_ * self._raw_critic(X.map(self._gan_input))

    @torch.no_grad()
    def _raw_critic(self, images):
        """The critic's output on the prepared ``images`` (data of critic inputs), as NumPy."""
        with full_precision(self.device_):
            return scores_to_numpy([self.critic_(chunk) for chunk in images.chunks(4 * self.batch_size)])

    def _critic_orientation(self, X):
        """+1 when the critic scores proxy anomalies below the normal samples ``X``, else -1.

        A WGAN critic is trained to tell the normal images from the generator's,
        never from other images: on an anomaly its value is an extrapolation,
        which ranks anomalies low on digits but high on Fashion-MNIST (500
        images a class, 2,000 critic steps), where it probably learned the
        generator's artefacts more than the class, and finds a clean image of
        another class more "real" than one of its own. Rotated normal images
        are clean images off the normal class, as anomalies are: on all ten
        digits and on two Fashion-MNIST classes the critic moved them in the
        direction it moved the test anomalies (mean standardised shift -6 to
        -25 on digits, +2 to +4 on Fashion-MNIST), and the benchmark's fits
        were turned on all ten Fashion-MNIST classes and on none of thirty
        digits fits.

        Proxies: the quarter turns of ``X`` (the half turn only for images
        that are not square, which a quarter turn would pad differently from
        every training image). Rows that are not images have no such proxies:
        +1, the critic as trained.
        """
        if self.image_shape_ is None:
            return 1
        height, width, _ = self.image_shape_
        normal = self._raw_critic(X.map(self._gan_input)).mean()
        turns = (1, 2, 3) if height == width else (2,)
        turned = [X.map(lambda x, k=k: self._gan_input(x, k)) for k in turns]
        proxies = np.mean([self._raw_critic(proxy).mean() for proxy in turned])
        return 1 if proxies <= normal else -1

    def _reconstruction_scores(self, X):
        """The paper's score: minus the mean final reconstruction error over the seeds."""
        targets = X.map(self._gan_input)
        n_seeds = self.n_seeds
        n_pairs = len(X) * n_seeds
        # Every (sample, seed) search is independent: run them in chunks of
        # pairs sized to the memory their generator copies need.
        if self.search == "joint":
            n_weights = sum(p.numel() for p in self.generator_.parameters())
            per_chunk = max(1, _SEARCH_FLOATS // (3 * n_weights))
        else:
            per_chunk = 64 * self.batch_size
        losses = torch.empty(n_pairs, device=self.device_, dtype=self._dtype)
        search = self._joint_search if self.search == "joint" else self._latent_search
        starts = range(0, n_pairs, per_chunk)
        for start in progress(starts, self.verbose, desc="latent search", unit="chunk"):
            stop = min(start + per_chunk, n_pairs)
            pairs = torch.arange(start, stop, device=self.device_)
            # Each sample is read once (streamed data crosses to the device once), then repeated per seed.
            first = start // n_seeds
            samples = targets[first : (stop - 1) // n_seeds + 1]
            losses[pairs] = search(samples[pairs // n_seeds - first], self.latent_seeds_[pairs % n_seeds])
        return scores_to_numpy([-losses.view(len(X), n_seeds).mean(1)])

    def _latent_search(self, targets, z):
        """Adam on the latent vectors only; one shared generator (in eval mode).

        Both searches run in full precision whatever ``mixed_precision`` says
        (the precision policy in ``skgeoad._torch``): they differentiate with
        respect to latents and weights whose steps bf16 cannot resolve.
        """
        z = z.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=self.latent_lr, betas=_SEARCH_BETAS)
        for _ in range(self.n_search_steps):
            with torch.enable_grad(), full_precision(self.device_):
                loss = _squared_error(self.generator_(z), targets)
                # Summed: each latent's gradient is its own sample's. Only the
                # latents' gradient is taken, so none piles up in generator_.
                (z.grad,) = torch.autograd.grad(loss.sum(), z)
            optimizer.step()
        with torch.no_grad(), full_precision(self.device_):
            return _squared_error(self.generator_(z), targets)

    def _joint_search(self, targets, z):
        """Adam on each latent and on its own copy of the generator's weights (vmapped).

        The copies are stacked along a leading axis, one row per (sample,
        seed) pair; ``torch.func.vmap`` computes every row's gradient in one
        batched pass, and a single (fused where available) Adam updates all
        rows, which is exactly one Adam per copy because Adam is elementwise.
        """
        generator, buffers = self.generator_, dict(self.generator_.named_buffers())
        n = len(z)
        weights = {
            name: p.detach().unsqueeze(0).expand(n, *p.shape).clone().requires_grad_(True)
            for name, p in generator.named_parameters()
        }
        latent = z.clone().requires_grad_(True)

        def loss_fn(params, latent, target):
            image = functional_call(generator, (params, buffers), (latent.unsqueeze(0),))[0]
            return _squared_error(image.unsqueeze(0), target.unsqueeze(0))[0]

        step_fn = vmap(grad_and_value(loss_fn, argnums=(0, 1)))
        betas, options = _SEARCH_BETAS, fused(self.device_)
        optimizers = (
            torch.optim.Adam(weights.values(), lr=self.generator_lr, betas=betas, **options),
            torch.optim.Adam([latent], lr=self.latent_lr, betas=betas, **options),
        )
        with full_precision(self.device_):
            for _ in range(self.n_search_steps):
                detached = {name: w.detach() for name, w in weights.items()}
                (weight_grads, latent.grad), _ = step_fn(detached, latent.detach(), targets)
                for name, weight in weights.items():
                    weight.grad = weight_grads[name]
                for optimizer in optimizers:
                    optimizer.step()
            with torch.no_grad():
                return vmap(loss_fn)({name: w.detach() for name, w in weights.items()}, latent.detach(), targets)


def _squared_error(images, targets):
    """Squared L2 distance per sample (the paper's reconstruction loss)."""
    return ((images - targets) ** 2).flatten(1).sum(1)


@records_arguments
class _Critic(torch.nn.Module):
    """An MLP critic with a scalar output per sample."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def reset_parameters(self, generator=None):
        self.mlp.reset_parameters(generator)

    def forward(self, x):
        return self.mlp(x).squeeze(1)
