"""Whole-score modules: raw rows in, ``score_samples`` out, as plain ``nn.Module``s.

A fitted detector scores in steps spread over its methods (validated rows ->
scaled tensors on the device -> transformations -> network -> score rule),
with chunking, progress bars and device handling around them. The modules here
are the same arithmetic as one ``forward``, for a whole batch at once, with
everything learned held as buffers: what ONNX export and other graph tools
need. They know nothing of scikit-learn; :mod:`skgeoad.export` builds them
from a fitted detector.

The score rules themselves (``transformation_normality``,
``softmax_normality``, ``reconstruction_normality``) are functions the
detectors call too, so a rule is written once. Each module reproduces its
detector's float32 (tabular: float64) path, op for op, so that the scores
agree to float rounding; a detector fitted with
``mixed_precision`` scores in bf16 and differs from them by bf16's rounding.
"""

import math

import numpy as np

import torch
from torch import nn


def transformation_normality(log_p, rule, alpha_minus_one):
    """GEOM's score rules from ``log_p[i, t, j]`` (log-probability of transformation ``j``
    given transformation ``t`` of sample ``i``): ``"simplified"``, the mean probability of
    the right transformation, or ``"dirichlet"``, the Dirichlet log-likelihood up to constants
    (``alpha_minus_one``: ``alpha_ - 1`` per transformation, float64)."""
    n_transforms = log_p.shape[1]
    if rule == "simplified":
        return log_p.diagonal(dim1=1, dim2=2).exp().mean(1)
    weighted = log_p.to(alpha_minus_one.dtype) * alpha_minus_one
    return weighted.sum((1, 2)) / n_transforms


def standardisation_moments(first, second):
    """``(mean, std)`` rows of two calibration score arrays, what :func:`combined_normality`
    standardises with (float64; the std floored at 1e-12, so constant scores divide by a
    positive number)."""
    return np.array([[np.mean(scores), max(np.std(scores), 1e-12)] for scores in (first, second)])


#: ADGAN's combined rules, and whether each counts the critic's deviation in both
#: directions (:func:`combined_normality`'s ``two_sided``).
ADGAN_COMBINED_RULES = {"combined": False, "combined_two_sided": True}


def combined_normality(first, second, moments, two_sided=False):
    """A ``"combined"`` rule: the mean of two scores, each standardised by the held-out
    normal samples' mean and standard deviation (``moments``, float64, rows ``(mean, std)``
    for the two scores in that order). GEOM's averages its ``"knn"`` and ``"simplified"``
    scores, ADGAN's its ``"reconstruction"`` and ``"critic"`` scores.

    With ``two_sided``, the second score counts as its distance from the held-out mean in
    either direction, ``-|z|``: a second score that is unusually *high* is abnormal too
    (ADGAN's ``"combined_two_sided"``, for a critic whose value on anomalies falls on both
    sides of its value on the class)."""
    first = (first.to(moments.dtype) - moments[0, 0]) / moments[0, 1]
    second = (second.to(moments.dtype) - moments[1, 0]) / moments[1, 1]
    if two_sided:
        second = -second.abs()
    return (first + second) / 2


def softmax_normality(logits, rule):
    """SubCluster's softmax rules: ``"msp"``, the largest probability, or ``"kl"``, the KL
    divergence of the softmax from the uniform distribution."""
    if rule == "msp":
        return torch.softmax(logits, dim=1).amax(1)
    log_p = torch.log_softmax(logits, dim=1)
    # A tensor in the score's dtype: an ONNX exporter stores a Python float as float32,
    # 2e-8 off in a float64 graph, where KL scores of spread softmaxes are ~1e-5.
    uniform = torch.tensor(math.log(logits.shape[1]), dtype=log_p.dtype, device=log_p.device)
    return (log_p.exp() * log_p).sum(1) + uniform


def cluster_logits(logits, n_transforms):
    """SubCluster's sub-cluster logits from its classifier's: with an auxiliary task of
    ``n_transforms`` transformations, its outputs are joint (sub-cluster, transformation)
    logits, sub-cluster major; their log-sum-exp over the transformations has the joint
    softmax summed over the transformations as its softmax. Unchanged for 1."""
    if n_transforms == 1:
        return logits
    return logits.unflatten(1, (-1, n_transforms)).logsumexp(2)


def sample_features(features, n_transforms):
    """One row per sample from the penultimate features of its ``n_transforms``
    transformations (rows ``i * T + t``, image-major): each transformation's features
    L2-normalised, concatenated, divided by ``sqrt(T)``. A unit vector whose dot products
    are mean per-transformation cosines, what the transformation k-NN rules compare."""
    unit = nn.functional.normalize(features, dim=1)
    return unit.reshape(-1, n_transforms * features.shape[1]) / math.sqrt(n_transforms)


def knn_normality(features, reference, n_neighbors):
    """The k-NN rules' similarity: the mean cosine similarity of each row of ``features``
    ``(..., n, d)`` to its ``n_neighbors`` most similar rows of ``reference`` ``(..., m, d)``,
    both already L2-normalised along the last axis; batched over the leading axes (GEOM
    keeps one reference per transformation). Returns shape ``(..., n)``."""
    similarity = features @ reference.transpose(-2, -1)
    return similarity.topk(n_neighbors, dim=-1).values.mean(-1)


def blocked_knn_normality(features, reference, n_neighbors, block=2**24):
    """:func:`knn_normality` of 2-D ``features`` in row blocks of at most ``block``
    similarity entries, so that memory stays bounded whatever the reference's size
    (the detectors' path; an exported graph takes a batch at once)."""
    per_block = max(1, block // len(reference))
    blocks = [features[start : start + per_block] for start in range(0, len(features), per_block)]
    return torch.cat([knn_normality(rows, reference, n_neighbors) for rows in blocks])


def leave_one_out_knn_normality(features, reference, n_neighbors, block=2**24):
    """:func:`knn_normality` of every row of ``features`` (unit rows, shape ``(n, d)``)
    to the rows ``reference`` (indices into ``features``), a row never counting as its
    own neighbour: how training samples score against a reference they may belong to,
    as new samples would. In row blocks of at most ``block`` similarity entries."""
    per_block = max(1, block // len(reference))
    reference_rows = features[reference]
    scores = []
    for start in range(0, len(features), per_block):
        rows = torch.arange(start, min(start + per_block, len(features)), device=features.device)
        similarity = features[rows] @ reference_rows.T
        similarity.masked_fill_(rows[:, None] == reference[None, :], -torch.inf)
        scores.append(similarity.topk(n_neighbors, dim=1).values.mean(1))
    return torch.cat(scores)


def scores_to_numpy(chunks):
    """Score chunks (device tensors) as one float64 NumPy array, what ``score_samples``
    returns."""
    return torch.cat(chunks).cpu().numpy().astype(np.float64)


def reconstruction_normality(x, reconstruction, rule):
    """An autoencoder's rules on flat samples: ``"cosine"`` similarity of a sample and its
    reconstruction, or ``"mse"``, minus their mean squared difference."""
    if rule == "cosine":
        return nn.functional.cosine_similarity(x, reconstruction, dim=1)
    return -(x - reconstruction).pow(2).mean(1)


class RowScaling(nn.Module):
    """Raw rows ``(n, n_features)`` to the detector's scaled samples.

    Images: ``(x - low) * scale - 1`` (the training min/max to [-1, 1]), read
    channels last and returned as ``(n, C, H * W)``. Tabular rows:
    ``(x - mean) * inverse_std``, returned as ``(n, d)``. The rows are first
    cast to ``dtype``, as :class:`~skgeoad._data.DeviceData` casts them.
    """

    def __init__(self, shift, scale, image_shape, dtype):
        super().__init__()
        self.register_buffer("shift", torch.as_tensor(shift, dtype=dtype))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=dtype))
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        self.dtype = dtype

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = (X.to(self.dtype) - self.shift) * self.scale
        if self.image_shape is None:
            return X
        height, width, channels = self.image_shape
        return (X - 1.0).reshape(-1, height * width, channels).transpose(1, 2)


class GeometricScore(nn.Module):
    """GEOM's score: every transformation of a sample, the classifier, the rule.

    Parameters
    ----------
    scaling : RowScaling
    transformations : nn.Module
        :class:`~skgeoad.transforms.GeometricTransformations` or
        :class:`~skgeoad.transforms.AffineTransformations` (its ``expand``).
    network : nn.Module
        The transformation classifier.
    rule : {"dirichlet", "simplified", "knn"}
    alpha_minus_one : torch.Tensor of shape (T, T) or None
        ``alpha_ - 1`` in float64 (the Dirichlet rule's weights); ``None`` for a
        ``"knn"`` score, which reads the classifier's features only (the
        iterative detector's, which fits no Dirichlet).
    floor : float
        Log-probabilities are clipped below at it.
    reference : torch.Tensor of shape (n_reference, T * n_features_out), optional
        The k-NN rule's training features (``train_features_``).
    n_neighbors : int, default=1
        Neighbours of the k-NN rule.
    moments : torch.Tensor of shape (2, 2), optional
        The combined rule's ``score_moments_`` (float64).
    """

    def __init__(self, scaling, transformations, network, rule, alpha_minus_one, floor,
                 reference=None, n_neighbors=1, moments=None):  # fmt: skip
        super().__init__()
        self.scaling, self.transformations, self.network = scaling, transformations, network
        self.rule = rule
        self.n_transforms = int(transformations.n_transforms)
        if alpha_minus_one is not None:
            self.register_buffer("alpha_minus_one", alpha_minus_one)
        self.floor = float(floor)
        if reference is not None:
            self.register_buffer("reference", reference)
            self.n_neighbors = min(int(n_neighbors), len(reference))
        if moments is not None:
            self.register_buffer("moments", moments)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        n_transforms = self.n_transforms
        features = self.network.forward_features(self.transformations.expand(self.scaling(X)))
        if self.rule in ("knn", "combined"):
            unit = sample_features(features.to(self.reference.dtype), n_transforms)
            knn = knn_normality(unit, self.reference, self.n_neighbors)
            if self.rule == "knn":
                return knn
        log_p = torch.log_softmax(self.network.forward_head(features).float(), dim=1).clamp_min(self.floor)
        log_p = log_p.reshape(-1, n_transforms, n_transforms)
        if self.rule == "combined":
            simplified = transformation_normality(log_p, "simplified", self.alpha_minus_one)
            return combined_normality(knn, simplified, self.moments)
        return transformation_normality(log_p, self.rule, self.alpha_minus_one)


class AutoencoderScore(nn.Module):
    """IterativeClusterAE's score: how well the autoencoder reconstructs a sample.

    Parameters
    ----------
    scaling : RowScaling
    autoencoder : nn.Module
        With ``encode`` and ``decode``.
    rule : {"cosine", "mse"}
    input_shape : tuple of int or None
        Images: ``(C, H, W)`` for a convolutional autoencoder, ``None`` for
        flat input. Images enter as intensities in [0, 1].
    images : bool
        Whether the samples are images (shifted to [0, 1]) or tabular rows.
    """

    def __init__(self, scaling, autoencoder, rule, input_shape, images):
        super().__init__()
        self.scaling, self.autoencoder, self.rule = scaling, autoencoder, rule
        self.input_shape = input_shape
        self.images = images

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.scaling(X)
        if self.images:
            X = (X + 1.0) * 0.5
            X = X.flatten(1) if self.input_shape is None else X.reshape(-1, *self.input_shape)
        reconstruction = self.autoencoder.decode(self.autoencoder.encode(X))
        X, reconstruction = X.flatten(1), reconstruction.to(X.dtype).flatten(1)
        return reconstruction_normality(X, reconstruction, self.rule)


class SubClusterScore(nn.Module):
    """SubCluster's score from the classifier's softmax (MSP, KL) or features (k-NN).

    Parameters
    ----------
    scaling : RowScaling
    network : nn.Module or None
        The sub-cluster classifier (``forward_features`` / ``forward_head``);
        ``None`` for the single-cluster fallback, which scores by Euclidean
        k-NN in the PCA embedding.
    rule : {"msp", "kl", "knn"}
    input_shape : tuple of int or None
        ``(C, H, W)`` of images, ``None`` for tabular rows.
    reference : torch.Tensor of shape (n_train, n_features_out)
        Features of the samples trained on (the k-NN rule's neighbours),
        already normalised for the cosine metric.
    n_neighbors : int
    metric : {"cosine", "euclidean"}
    embedding : tuple of torch.Tensor or None
        PCA ``(mean, components)`` of the single-cluster fallback.
    dtype : torch.dtype
        The detector's compute dtype.
    transformations : nn.Module, optional
        The auxiliary task's :class:`~skgeoad.transforms.GeometricTransformations`
        (``None`` without one).
    """

    def __init__(self, scaling, network, rule, input_shape, reference, n_neighbors, metric, embedding, dtype,
                 transformations=None):  # fmt: skip
        super().__init__()
        self.scaling, self.network, self.rule = scaling, network, rule
        self.transformations = transformations
        self.n_transforms = 1 if transformations is None else int(transformations.n_transforms)
        self.input_shape = input_shape
        self.register_buffer("reference", reference)
        self.n_neighbors = min(int(n_neighbors), len(reference))
        self.metric = metric
        if embedding is not None:
            self.register_buffer("embedding_mean", embedding[0])
            self.register_buffer("embedding_components", embedding[1])
        self.dtype = dtype

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.scaling(X)
        if self.network is None:
            features = (X.flatten(1) - self.embedding_mean) @ self.embedding_components
            return self._knn(features)
        n_transforms = self.n_transforms
        if self.rule == "knn" and n_transforms > 1:
            features = self.network.forward_features(self.transformations.expand(X)).to(self.dtype)
            return self._knn(sample_features(features, n_transforms))
        if self.input_shape is not None:
            X = X.reshape(-1, *self.input_shape)
        features = self.network.forward_features(X)
        if self.rule == "knn":
            return self._knn(features.to(self.dtype))
        logits = cluster_logits(self.network.forward_head(features).to(self.dtype), n_transforms)
        return softmax_normality(logits, self.rule)

    def _knn(self, features):
        if self.metric == "cosine":
            features = nn.functional.normalize(features, dim=1)
            return knn_normality(features, self.reference, self.n_neighbors)
        # From the differences, as the detector computes them (torch.cdist's exact mode,
        # which the exporter cannot translate); the graph holds a (batch, n_train,
        # n_features) tensor for them.
        difference = features.unsqueeze(1) - self.reference.unsqueeze(0)
        similarity = -difference.pow(2).sum(-1).sqrt()
        return similarity.topk(self.n_neighbors, dim=1).values.mean(1)


class OdinScore(nn.Module):
    """SubCluster's ODIN score: max softmax at ``temperature`` of the input moved by ``epsilon``
    against the gradient of the cross-entropy with its predicted sub-cluster.

    The gradient is taken with ``torch.autograd`` in ``forward``, as the detector takes it;
    :func:`skgeoad.export.export_onnx` traces that backward pass into plain operators.

    Parameters
    ----------
    scaling : RowScaling
    network : nn.Module
        The sub-cluster classifier, its weights frozen.
    input_shape : tuple of int or None
        ``(C, H, W)`` of images, ``None`` for tabular rows.
    temperature, epsilon : float
    dtype : torch.dtype
        The detector's compute dtype.
    n_transforms : int, default=1
        Transformations of the classifier's auxiliary task (its outputs are
        joint labels, see :func:`cluster_logits`).
    """

    def __init__(self, scaling, network, input_shape, temperature, epsilon, dtype, n_transforms=1):
        super().__init__()
        self.scaling, self.network = scaling, network
        self.n_transforms = int(n_transforms)
        self.input_shape = input_shape
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.dtype = dtype

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # Gradients even when called under no_grad or inference_mode (the clone makes
        # an inference-mode input an ordinary tensor).
        with torch.inference_mode(False), torch.enable_grad():
            x = self.scaling(X.clone())
            if self.input_shape is not None:
                x = x.reshape(-1, *self.input_shape)
            x = x.detach().requires_grad_(True)
            logits = cluster_logits(self.network(x).to(self.dtype), self.n_transforms) / self.temperature
            loss = nn.functional.cross_entropy(logits, logits.argmax(1), reduction="sum")
            (gradient,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                logits = self.network(x.detach() - self.epsilon * gradient.sign()).to(self.dtype)
                logits = cluster_logits(logits, self.n_transforms)
                return torch.softmax(logits / self.temperature, dim=1).amax(1)


class LatentSearchScore(nn.Module):
    """ADGAN's scores with ``search="latent"``. ``"reconstruction"``: minus the mean
    squared error left after ``n_search_steps`` Adam steps on each of the
    ``latent_seeds``, the generator fixed; ``"critic"``: the critic's output times
    ``critic_orientation``;
    ``"combined"``: the two standardised by ``moments`` and averaged;
    ``"combined_two_sided"``: the same with the critic's deviation counted both ways.

    The steps' gradients are taken with ``torch.autograd`` in ``forward``, as the detector
    takes them; :func:`skgeoad.export.export_onnx` traces them into plain operators.

    Parameters
    ----------
    scaling : RowScaling
    generator : nn.Module
        The trained generator, its weights frozen.
    latent_seeds : torch.Tensor of shape (n_seeds, latent_dim)
    image_shape : tuple of int or None
        ``(H, W, C)`` of images, ``None`` for tabular rows.
    side : int or None
        The generator's square image side (images are padded to it with -1).
    n_search_steps : int
    latent_lr : float
    betas : tuple of float
        Adam's betas.
    rule : {"reconstruction", "critic", "combined", "combined_two_sided"}, \
            default="reconstruction"
    critic : nn.Module, optional
        The trained critic (every rule but ``"reconstruction"``).
    moments : torch.Tensor of shape (2, 2), optional
        ``score_moments_`` (the two combined rules).
    critic_orientation : {1, -1}, default=1
        ``critic_orientation_``: the sign the critic's output is scored with.
    """

    def __init__(
        self, scaling, generator, latent_seeds, image_shape, side, n_search_steps, latent_lr, betas,
        rule="reconstruction", critic=None, moments=None, critic_orientation=1,
    ):  # fmt: skip
        super().__init__()
        if rule not in ("reconstruction", "critic", *ADGAN_COMBINED_RULES):
            raise ValueError(f"unknown ADGAN rule {rule!r}")
        self.scaling, self.generator, self.critic, self.rule = scaling, generator, critic, rule
        self.critic_orientation = int(critic_orientation)
        if moments is not None:
            self.register_buffer("moments", moments)
        self.register_buffer("latent_seeds", latent_seeds)
        self.image_shape, self.side = image_shape, side
        self.n_search_steps, self.latent_lr, self.betas = int(n_search_steps), float(latent_lr), tuple(betas)

    def _targets(self, X):
        """Scaled rows as the generator's images: ``(n, C, side, side)``, padded with -1."""
        if self.image_shape is None:
            return X
        height, width, channels = self.image_shape
        # reshape(-1, ...), not view(len(X), ...): len() would fix the batch size in a trace.
        images = X.reshape(-1, channels, height, width)
        if self.side == height == width:
            return images
        top, left = (self.side - height) // 2, (self.side - width) // 2
        padding = (left, self.side - width - left, top, self.side - height - top)
        return nn.functional.pad(images, padding, value=-1.0)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        targets = self._targets(self.scaling(X))
        if self.rule == "critic":
            return self._critic(targets)
        reconstruction = self._reconstruction(targets)
        if self.rule == "reconstruction":
            return reconstruction
        two_sided = ADGAN_COMBINED_RULES[self.rule]
        return combined_normality(reconstruction, self._critic(targets), self.moments, two_sided)

    def _critic(self, targets):
        return self.critic(targets) * self.critic_orientation

    def _reconstruction(self, targets):
        with torch.inference_mode(False), torch.enable_grad():
            targets = targets.clone()  # a tensor made in inference mode cannot enter autograd
            n_seeds = self.latent_seeds.shape[0]
            # Row i * n_seeds + j searches from seed j towards sample i, as the detector pairs them.
            targets = targets.repeat_interleave(n_seeds, 0)
            latent = self.latent_seeds.repeat(targets.shape[0] // n_seeds, 1).clone().requires_grad_(True)
            # Adam's own update rule (the detector's optimiser), one row per search.
            optimizer = torch.optim.Adam([latent], lr=self.latent_lr, betas=self.betas, foreach=False)
            for _ in range(self.n_search_steps):
                loss = _squared_error(self.generator(latent), targets)
                (latent.grad,) = torch.autograd.grad(loss.sum(), latent)
                optimizer.step()
            with torch.no_grad():
                losses = _squared_error(self.generator(latent), targets)
                return -losses.reshape(-1, n_seeds).mean(1)


def _squared_error(images, targets):
    return ((images - targets) ** 2).flatten(1).sum(1)


class DeployedScore(nn.Module):
    """A whole-score module with the detector's threshold: the three outputs of
    ``score_samples``, ``decision_function`` and ``predict``, in float64 (int64
    for the labels)."""

    def __init__(self, score, offset):
        super().__init__()
        self.score = score
        self.register_buffer("offset", torch.tensor(float(offset), dtype=torch.float64))

    def forward(self, X: torch.Tensor):
        scores = self.score(X).to(torch.float64)
        decision = scores - self.offset
        labels = torch.where(decision < 0, -1, 1).to(torch.int64)
        return scores, decision, labels
