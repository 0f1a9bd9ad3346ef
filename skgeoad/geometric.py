"""Anomaly detection by predicting geometric transformations (GEOM)."""

import math
from numbers import Integral, Real

import torch
from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions

from ._scoring import (
    blocked_knn_normality,
    combined_normality,
    standardisation_moments,
    sample_features,
    scores_to_numpy,
    transformation_normality,
)
from ._torch import autocast, build_module, fused, inference_pass_size, progress, train_classifier
from .base import BaseDeepDetector
from .dirichlet import PROBABILITY_FLOOR, fit_dirichlet
from .networks import MLP, WideResNet
from .transforms import TRANSFORMATION_SETS, AffineTransformations, GeometricTransformations

#: The rules the ``"combined"`` score standardises and averages.
COMBINED_RULES = ("knn", "simplified")

#: Training log-probabilities up to this size are kept between the Dirichlet
#: fit and the training scores instead of being computed twice.
_CACHE_BYTES = 256 * 2**20


class GeometricTransformDetector(TransformerMixin, BaseDeepDetector):
    """Deep anomaly detection with geometric transformations (Golan & El-Yaniv, 2018).

    A classifier learns to tell which of ``k`` geometric transformations
    (flips, translations, rotations by multiples of 90 degrees) was applied to
    a normal image. A test image is transformed in all ``k`` ways; how
    confidently, and how typically, the classifier recognises the
    transformations measures how normal the image is: images unlike the
    training class give the classifier's learned cues nothing to hold on to.

    Rows that are not images (tabular data) use GOAD's random affine maps
    ``x -> x W_m`` instead, with an MLP classifier (Bergman & Hoshen, 2020).

    Parameters
    ----------
    transformations : {"all", "translations_rotations", "flips_rotations", "rotations"}, default="all"
        Which transformations of images to predict. ``"all"`` are the paper's
        72: horizontal flip (or not) x translation by ``{0, -s, +s}`` pixels
        along the height x the same along the width x rotation by
        ``{0, 90, 180, 270}`` degrees, applied in that order, with ``s`` a
        quarter of the side (8 for 32x32 images) and the uncovered border
        filled by mirroring the edge (``np.pad(mode="symmetric")``).
        ``"translations_rotations"`` drops the flip (36),
        ``"flips_rotations"`` drops the translations (8, the reference code's
        ``SimpleTransformer``), ``"rotations"`` keeps the four rotations.
        Fewer transformations train and score faster, usually at some cost in
        accuracy. Rotations need square images; translations at least 4x4.
    score_type : {"dirichlet", "simplified", "knn", "combined"}, default="dirichlet"
        ``"dirichlet"`` fits, per transformation, a Dirichlet distribution to
        the softmax outputs of the training images (maximum likelihood,
        Wicker initialisation and Minka's Newton iteration, in float64; see
        :func:`skgeoad.dirichlet.fit_dirichlet`) and scores
        ``mean_t sum_j (alpha_tj - 1) log p_j(T_t(x))``, the paper's normality
        score up to a constant and a factor. ``"simplified"`` is the mean
        probability the classifier gives the correct transformation.
        ``"knn"`` (beyond the paper) looks at what the classifier *sees*
        rather than at what it answers: the similarity of the image to its
        ``n_neighbors`` nearest training images, where the similarity of two
        images is the mean over the transformations ``t`` of the cosine
        similarity of the classifier's penultimate features of ``T_t`` of
        each (see the Notes). ``"combined"`` is the mean of the ``"knn"`` and
        ``"simplified"`` scores, each standardised by the mean and standard
        deviation of its scores on the held-out samples (the training
        samples with ``validation_fraction=0``): the one rule that stayed
        ahead of IsolationForest wherever we measured (see the Notes). Read
        again at scoring time: ``set_params(score_type=...)`` rescores a
        fitted detector, with that rule's threshold from ``offsets_``. (Named
        ``score_type`` rather than ``score``: scikit-learn reserves
        ``score`` for a method.)
    n_neighbors : int, default=3
        Neighbours of the ``"knn"`` score.
    knn_max_samples : int or "auto", default="auto"
        Training samples whose features the ``"knn"`` score keeps as its
        reference (``train_features_``), a random subset when fewer than the
        samples trained on; ``"auto"`` keeps as many as fit 64 MiB (all of
        them on small data; 910 of the 5,400 a class of Fashion-MNIST trains
        on with WRN-10-4 and the 72 transformations, 73.7 kB each). The
        reference is kept whatever ``score_type`` is, so that every rule can
        be switched to after fit; it is most of a small model's size.
    depth : int, default=10
        Depth ``6n + 4`` of the Wide ResNet (images).
    widen_factor : int, default=4
        Width multiplier of the Wide ResNet (images). The paper uses WRN-10-4
        for 32x32 images; ``widen_factor=1`` is about 10 times faster on a CPU.
    epochs : int, default=None
        Passes over the transformed training set (every image once per
        transformation per epoch). ``None`` uses the paper's
        ``ceil(200 / n_transforms)``: 3 for the 72 transformations.
    batch_size : int, default=128
        Transformed images per optimisation step. Scoring runs in chunks of
        the same number of network inputs (more for images smaller than
        32x32, so that a pass holds as many pixels), so memory stays bounded
        whatever the number of samples.
    learning_rate : float, default=1e-3
        Adam's learning rate.
    weight_decay : float, default=5e-4
        L2 penalty added to the gradient (coupled, as Keras' ``l2`` regulariser
        in the reference code, not AdamW's decoupled decay).
    n_affine_transforms : int, default=64
        Number of random affine maps for tabular data.
    affine_dim : int, default=32
        Output dimension of each affine map (tabular data).
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden layers of the MLP classifier (tabular data).
    image_shape : tuple, "tabular" or None, default=None
        How to read 2-D rows: ``(H, W)`` or ``(H, W, C)`` (channels last);
        ``"tabular"`` to treat them as plain features; ``None`` infers a grey
        image from a square number of features of at least 64, an RGB image
        from three times such a square, tabular otherwise. 3-D ``(n, H, W)``
        and 4-D ``(n, H, W, C)`` arrays are always images.
    contamination : float in (0, 0.5], default=0.1
        Share of new normal samples that ``predict`` should flag as outliers
        (the expected share of outliers in the training data): ``offset_`` is
        this quantile of the scores of the held-out training samples (see
        ``validation_fraction``).
    validation_fraction : float in [0, 1), default=0.1
        Share of the training samples held out of training: the model scores
        them as it scores new data, so the threshold ``offset_`` set from
        their scores flags about ``contamination`` of new normal data
        (training scores are optimistic: a threshold taken from them flags
        far fewer). Their loss is recorded per epoch in ``history_``
        (``validation_loss``). ``0`` trains on every sample and sets
        ``offset_`` from the training scores, as scikit-learn's outlier
        detectors do: ``predict`` then flags exactly ``contamination`` of the
        training data itself, and fewer than that of new data.
    device : str or torch.device, default="auto"
        Where to compute: ``"auto"`` picks CUDA when available, else the CPU.
    mixed_precision : "auto" or bool, default="auto"
        bf16 autocast of the networks (under the precision policy of the user
        guide); ``"auto"`` enables it where the device computes bf16 natively:
        CUDA devices that support it and CPUs with AMX or AVX512-BF16
        instructions. ``False`` computes in exact float32.
    verbose : int, default=0
        1 shows progress bars over epochs and scoring, 2 also over batches.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and the affine maps. The same
        seed on the same device gives the same scores.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained transformation classifier (:class:`~skgeoad.networks.WideResNet`
        for images, :class:`~skgeoad.networks.MLP` for tabular data).
    transformations_ : torch.nn.Module
        The transformations, as index tables (images) or affine matrices (tabular).
    n_transforms_ : int
        Number of transformations, the classifier's number of classes.
    alpha_ : ndarray of shape (n_transforms, n_transforms)
        Dirichlet parameters, one row per transformation (estimated whatever
        ``score_type`` is, for inspection).
    train_features_ : torch.Tensor of shape (n_reference, n_transforms * n_features_out)
        The ``"knn"`` score's reference: per sample trained on (at most
        ``knn_max_samples``), the penultimate features of its
        transformations, each L2-normalised, then concatenated and divided by
        ``sqrt(n_transforms)`` (a unit vector whose dot products are the mean
        per-transformation cosines).
    score_moments_ : ndarray of shape (2, 2)
        Mean and standard deviation of the ``"knn"`` and ``"simplified"``
        scores (rows, in that order) of the held-out samples, which the
        ``"combined"`` rule standardises them with.
    epochs_ : int
        Epochs actually trained.
    history_ : list of dict
        Per epoch: mean training ``loss`` and, with held-out samples,
        ``validation_loss``.
    offsets_ : dict
        Threshold of each ``score_type`` (the ``contamination`` quantile of
        the held-out scores): ``decision_function = score_samples -
        offsets_[score_type]``, so ``set_params(score_type=...)`` after fit
        rescores with a matching threshold.
    offset_ : float
        Offset of the ``score_type`` the detector was fitted with.
    validation_indices_ : ndarray or None
        Indices of the training samples held out of training to set the
        thresholds (``None`` with ``validation_fraction=0``).
    image_shape_ : tuple of int or None
        ``(H, W, C)`` of the images, ``None`` for tabular data.
    device_ : torch.device
        Device the model lives on.
    mixed_precision_ : bool
        Whether the networks run under bf16 autocast (what ``"auto"`` resolved
        to on ``device_``).
    n_features_in_ : int
        Number of features (pixel values) per sample.

    See Also
    --------
    sklearn.ensemble.IsolationForest : Tree-based detector for tabular data.
    sklearn.svm.OneClassSVM : Kernel detector, the paper's RAW-OC-SVM baseline.

    Notes
    -----
    Images smaller than the paper's 32x32 are not padded: the network ends
    with global average pooling, so it takes any size (an 8x8 digit leaves
    the last group on a 2x2 map), and translations stay a quarter of the
    side (2 pixels for 8x8). Pixel values are mapped to [-1, 1] with the
    global minimum and maximum of the training data.

    The ``"knn"`` score is not in the paper. The Dirichlet and simplified
    scores read only the classifier's answer, the softmax; but to recognise
    the transformations the network learns features of the normal images
    (where the shoes' toes point, where a shirt's collar sits) that say more
    than the answer does. ``"knn"`` compares those features of a test
    image, under every transformation, with the training images' (a Deep
    Nearest Neighbours score on self-supervised features [3]_ [4]_). From
    the same fits it lifted the Fashion-MNIST one-vs-all mean from 93.4 to
    94.4 (WRN-10-1, 500 images per class, 3 seeds; see the benchmarks page)
    and the digits mean with WRN-10-1 from 97.9 to 99.4; it costs the
    stored features (``knn_max_samples``). The number of
    neighbours was chosen on digits (1 and 3 within 0.1 of each other; 3 is
    less sensitive to a stray outlier in the training data).

    Training sees ``epochs * n_samples * n_transforms`` images and scoring
    ``n_samples * n_transforms``: with the 72 transformations and WRN-10-4,
    expect minutes per thousand 32x32 training images on a CPU, and use a GPU,
    a smaller ``widen_factor`` or fewer transformations for large data.

    References
    ----------
    .. [1] I. Golan and R. El-Yaniv, "Deep Anomaly Detection Using Geometric
       Transformations", NeurIPS 2018.
    .. [2] L. Bergman and Y. Hoshen, "Classification-Based Anomaly Detection
       for General Data", ICLR 2020.
    .. [3] L. Bergman, N. Cohen and Y. Hoshen, "Deep Nearest Neighbor Anomaly
       Detection", arXiv:2002.10445, 2020.
    .. [4] Y. Sun, Y. Ming, X. Zhu and Y. Li, "Out-of-Distribution Detection
       with Deep Nearest Neighbors", ICML 2022.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skgeoad import GeometricTransformDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> detector = GeometricTransformDetector(
    ...     transformations="rotations", widen_factor=1, epochs=5, random_state=0
    ... ).fit(X[y == 0][:100])
    >>> scores = detector.score_samples(X[:4])   # digits 0, 1, 2, 3
    >>> bool(scores[0] > scores[1:].max())
    True
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "transformations": [StrOptions(set(TRANSFORMATION_SETS))],
        "score_type": [StrOptions({"dirichlet", "simplified", "knn", "combined"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "knn_max_samples": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 4, None, closed="left")],
        "widen_factor": [Interval(Integral, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "n_affine_transforms": [Interval(Integral, 2, None, closed="left")],
        "affine_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": [tuple, list],
    }

    def __init__(
        self,
        *,
        transformations="all",
        score_type="dirichlet",
        n_neighbors=3,
        knn_max_samples="auto",
        depth=10,
        widen_factor=4,
        epochs=None,
        batch_size=128,
        learning_rate=1e-3,
        weight_decay=5e-4,
        n_affine_transforms=64,
        affine_dim=32,
        hidden_layer_sizes=(64,),
        image_shape=None,
        contamination=0.1,
        validation_fraction=0.1,
        device="auto",
        mixed_precision="auto",
        verbose=0,
        random_state=None,
    ):
        self.transformations = transformations
        self.score_type = score_type
        self.n_neighbors = n_neighbors
        self.knn_max_samples = knn_max_samples
        self.depth = depth
        self.widen_factor = widen_factor
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.n_affine_transforms = n_affine_transforms
        self.affine_dim = affine_dim
        self.hidden_layer_sizes = hidden_layer_sizes
        self.image_shape = image_shape
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.verbose = verbose
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------

    def _build(self, generator):
        """The transformations and the (untrained) classifier for this input."""
        if self.image_shape_ is not None:
            return image_transformation_classifier(
                self.image_shape_, self.transformations, self.depth, self.widen_factor,
                generator, self.device_, self._dtype,
            )  # fmt: skip
        transformations = AffineTransformations(
            self.n_features_in_, self.n_affine_transforms, self.affine_dim, generator
        )
        n_classes = transformations.n_transforms

        def factory():
            return MLP(self.affine_dim, n_classes, tuple(self.hidden_layer_sizes))

        network = build_module(factory, generator, self.device_, self._dtype)
        return transformations.to(self.device_, self._dtype), network

    _score_rules = ("dirichlet", "simplified", "knn", "combined")

    def _fit_tensor(self, X, rng, generator, X_val=None):
        self.transformations_, self.network_ = self._build(generator)
        self.n_transforms_ = n_transforms = self.transformations_.n_transforms
        self.epochs_ = self.epochs or math.ceil(200 / n_transforms)

        def batches_of(data):
            return transformation_batches(self.transformations_, data)

        optimizer = torch.optim.Adam(
            self.network_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay,
            **fused(self.device_),
        )  # fmt: skip
        self.history_ = train_classifier(
            self.network_,
            batches_of(X),
            len(X) * n_transforms,
            epochs=self.epochs_,
            batch_size=self.batch_size,
            optimizer=optimizer,
            generator=generator,
            device=self.device_,
            validation=None if X_val is None else (batches_of(X_val), len(X_val) * n_transforms),
            mixed_precision=self.mixed_precision_,
            verbose=self.verbose,
        )
        scores = self._fit_scoring(X, rng, keep_scores=X_val is None)
        if X_val is not None:
            scores = self._calibration_scores(X_val, rules=self._score_rules[:-1])
        # The combined rule's standardisation, from the scores that set the thresholds.
        self.score_moments_ = standardisation_moments(*(scores[rule] for rule in COMBINED_RULES))
        self._moments = torch.as_tensor(self.score_moments_, device=self.device_)
        knn, simplified = (torch.as_tensor(scores[rule]) for rule in COMBINED_RULES)
        scores["combined"] = combined_normality(knn, simplified, torch.as_tensor(self.score_moments_)).numpy()
        return scores

    def _fit_scoring(self, X, rng, keep_scores=True):
        """Estimate ``alpha_`` and the k-NN reference from the training images; return
        their scores per rule (``None`` without ``keep_scores``).

        Streams the training set through the network once, accumulating the
        Dirichlet's sufficient statistics (mean probability and mean log
        probability per transformation) and the reference features and, when
        they fit in memory, keeping the network's outputs for the training
        scores.
        """
        n_transforms = self.n_transforms_
        dtype = _reduction_dtype(self.device_)
        sum_p = torch.zeros(n_transforms, n_transforms, dtype=dtype, device=self.device_)
        sum_log_p = torch.zeros_like(sum_p)
        n_features_out = self.network_.fc.in_features
        itemsize = torch.finfo(self._dtype).bits // 8
        in_reference = self._knn_reference_mask(len(X), n_transforms * n_features_out, rng)
        per_sample = n_transforms * (n_transforms * 4 + n_features_out * itemsize)
        keep = keep_scores and len(X) * per_sample <= _CACHE_BYTES
        kept, reference, start = [], [], 0
        for log_p, features in self._network_outputs(X, "Dirichlet fit"):
            sum_p += log_p.exp().sum(0, dtype=dtype)
            sum_log_p += log_p.sum(0, dtype=dtype)
            reference.append(features[in_reference[start : start + len(features)]])
            start += len(features)
            if keep:
                kept.append((log_p, features))
        self.alpha_ = fit_dirichlet(
            (sum_p / len(X)).cpu().numpy(), (sum_log_p / len(X)).cpu().numpy()
        )
        self._alpha_minus_one = torch.as_tensor(self.alpha_ - 1.0, dtype=dtype, device=self.device_)
        self.train_features_ = torch.cat(reference)
        rules = self._score_rules[:-1]  # the combined rule is set from these scores
        if keep:
            chunks = [self._normalities(outputs, rules) for outputs in kept]
            return {rule: scores_to_numpy([chunk[rule] for chunk in chunks]) for rule in rules}
        return self._calibration_scores(X, rules=rules) if keep_scores else None

    # -- scoring -----------------------------------------------------------

    def _network_outputs(self, X, description="scoring"):
        """Yield ``(log_p, features)`` for chunks of samples.

        ``log_p[i, t, j]``, shape ``(chunk, T, T)``, is the log-probability
        that the classifier gives transformation ``j`` when shown
        transformation ``t`` of sample ``i``, clipped below at
        ``log(PROBABILITY_FLOOR)``; ``features[i]``, shape ``(chunk, T *
        n_features_out)``, the penultimate features of the ``T``
        transformations of sample ``i``, each L2-normalised, concatenated and
        divided by ``sqrt(T)``: a unit vector.
        """
        n_transforms = self.n_transforms_
        floor = math.log(PROBABILITY_FLOOR)
        outputs = transformed_outputs(
            self.network_, self.transformations_, X, self._inference_batch_size(), self.device_,
            self.mixed_precision_, self._dtype, self.verbose, description,
        )  # fmt: skip
        for logits, features in outputs:
            log_p = torch.log_softmax(logits.float(), dim=1).clamp_min_(floor)
            yield log_p.view(len(features), n_transforms, n_transforms), features

    def _inference_batch_size(self):
        return inference_batch_size(
            self.network_, self.image_shape_, self.batch_size, self.device_, self.mixed_precision_
        )

    def _normality(self, outputs, rule):
        return self._normalities(outputs, (rule,))[rule]

    def _normalities(self, outputs, rules):
        """Each of ``rules``' scores of a chunk's ``(log_p, features)``; the combined
        rule's parts, when also asked for, are computed once."""
        log_p, features = outputs
        scores = {}

        def score(rule):
            if rule not in scores:
                if rule == "knn":
                    scores[rule] = self._knn(features)
                elif rule == "combined":
                    moments = self._fitted_by_this_version("_moments", rule, "score moments")
                    scores[rule] = combined_normality(score("knn"), score("simplified"), moments)
                else:
                    scores[rule] = transformation_normality(log_p, rule, self._alpha_minus_one)
            return scores[rule]

        return {rule: score(rule) for rule in rules}

    def _knn(self, features):
        """Mean similarity of ``features`` (a chunk's, from ``_network_outputs``) to the
        nearest reference features."""
        reference = self._knn_reference()
        return blocked_knn_normality(features, reference, min(self.n_neighbors, len(reference)))

    def _knn_reference(self):
        return self._fitted_by_this_version("train_features_", "knn", "training features")

    def transform(self, X):
        """The self-supervised features the ``"knn"`` score compares, for any detector.

        The classifier learned to recognise the transformations of the normal
        data; its penultimate features of all transformations of a sample
        describe the sample as that task sees it. They make a
        ``GeometricTransformDetector`` a feature extractor in front of any
        scikit-learn detector, in a :class:`~sklearn.pipeline.Pipeline`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)

        Returns
        -------
        features : ndarray of shape (n_samples, n_transforms * n_features_out)
            Per sample, the features of each transformation, L2-normalised,
            concatenated and divided by ``sqrt(n_transforms)`` (unit rows:
            their dot products are mean per-transformation cosines). Float32
            for images (float64 for tabular rows); 72 x 256 values per sample
            with the default WRN-10-4.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.neighbors import LocalOutlierFactor
        >>> from sklearn.pipeline import make_pipeline
        >>> from skgeoad import GeometricTransformDetector
        >>> X, y = load_digits(return_X_y=True)
        >>> pipeline = make_pipeline(
        ...     GeometricTransformDetector(transformations="rotations", widen_factor=1,
        ...                                epochs=5, random_state=0),
        ...     LocalOutlierFactor(n_neighbors=10, novelty=True),
        ... ).fit(X[y == 0][:100])
        >>> pipeline[0].transform(X[:2]).shape          # 4 rotations x 64 features
        (2, 256)
        >>> scores = pipeline.score_samples(X[:4])     # digits 0, 1, 2, 3
        >>> bool(scores[0] > scores[1:].max())
        True
        """
        X = self._fitted_data(X)
        return torch.cat([features for _, features in self._network_outputs(X)]).cpu().numpy()

    def transformation_proba(self, X):
        """The classifier's softmax over the transformations, for every transformation of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_transforms, n_transforms)
            ``proba[i, t, j]`` is the probability the classifier gives
            transformation ``j`` when shown transformation ``t`` of sample
            ``i``; the diagonal ``proba[:, t, t]`` is how well it recognises
            each transformation (the simplified score is its mean).
        """
        X = self._fitted_data(X)
        return torch.cat([log_p.exp() for log_p, _ in self._network_outputs(X)]).cpu().numpy()

    def _score_tensor(self, X, rule):
        return scores_to_numpy([self._normality(outputs, rule) for outputs in self._network_outputs(X)])

    def _calibration_scores(self, X, rng=None, rules=None):
        """Every rule's scores (or those of ``rules``) from one pass through the network."""
        rules = rules or self._score_rules
        outputs = self._network_outputs(X, "calibration")
        chunks = [self._normalities(chunk_outputs, rules) for chunk_outputs in outputs]
        return {rule: scores_to_numpy([chunk[rule] for chunk in chunks]) for rule in rules}


def image_transformation_classifier(image_shape, kind, depth, widen_factor, generator, device, dtype):
    """The ``kind`` transformations of ``(H, W, C)`` images and an untrained Wide ResNet
    to tell them apart: ``(transformations, network)`` on ``device``."""
    height, width, channels = image_shape
    transformations = GeometricTransformations(height, width, kind)
    n_classes = transformations.n_transforms

    def factory():
        return WideResNet(channels, n_classes, depth, widen_factor)

    network = build_module(factory, generator, device, dtype)
    return transformations.to(device, dtype), network


def inference_batch_size(network, image_shape, batch_size, device, mixed_precision):
    """Network inputs per forward pass when scoring every transformation of samples.

    Images: as many as keep the widest activation map of the pass within the
    device's :data:`~skgeoad._torch.PASS_ACTIVATION_BYTES` (the network says
    how large its maps are, :meth:`~skgeoad.networks.WideResNet.activation_elements`),
    at least ``batch_size``; tabular rows: 8 batches.
    """
    if image_shape is None:
        return 8 * batch_size
    height, width, _ = image_shape
    itemsize = 2 if mixed_precision else torch.finfo(network.fc.weight.dtype).bits // 8
    return max(batch_size, inference_pass_size(network.activation_elements(height, width) * itemsize, device))


@torch.inference_mode()
def transformed_outputs(
    network, transformations, X, batch_size, device, mixed_precision, dtype, verbose=0,
    description="scoring",
):  # fmt: skip
    """Yield ``(logits, features)`` of every transformation of chunks of the samples ``X``.

    A chunk holds as many samples as fit ``batch_size`` network inputs (at
    least one). ``logits``: shape ``(chunk * T, T)``, rows ``i * T + t``;
    ``features``: the unit per-sample features of :func:`~skgeoad._scoring.sample_features`,
    shape ``(chunk, T * n_features_out)``, in ``dtype``.
    """
    n_transforms = transformations.n_transforms
    per_chunk = max(1, batch_size // n_transforms)
    network.eval()
    starts = range(0, len(X), per_chunk)
    for start in progress(starts, verbose, desc=description, unit="chunk"):
        chunk = X[start : start + per_chunk]
        with autocast(device, mixed_precision):
            features = network.forward_features(transformations.expand(chunk))
            logits = network.forward_head(features)
        yield logits, sample_features(features.to(dtype), n_transforms)


def transformation_batches(transformations, data, samples=None):
    """``make_batch(items)`` for :func:`~skgeoad._torch.train_classifier`: item ``i`` is
    transformation ``i % T`` of sample ``i // T`` of ``data`` (of ``data[samples]`` when
    the training set is a subset given by index), labelled ``i % T``."""
    n_transforms = transformations.n_transforms

    def make_batch(items):
        rows, labels = items // n_transforms, items % n_transforms
        if samples is not None:
            rows = samples[rows]
        return transformations(data[rows], labels), labels

    return make_batch


def _reduction_dtype(device):
    """float64 for the Dirichlet statistics, except where the device has none."""
    return torch.float32 if device.type == "mps" else torch.float64
