"""Unsupervised detection on contaminated data: iterative clustering + autoencoder."""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._scoring import reconstruction_normality
from ._torch import autocast, build_module, evaluate_loss, progress, run_epoch
from .base import BaseDeepDetector
from .clustering import distribution_clustering, fit_predict_clusters, select_low_variance_clusters
from .networks import ConvAutoencoder, MLPAutoencoder

#: Largest dimension the k-means / GMM initialisations cluster in; wider
#: inputs are projected on their leading principal components first.
_MAX_INIT_DIMENSIONS = 50

SCORE_TYPES = ("cosine", "mse")


class IterativeClusterAEDetector(BaseDeepDetector):
    """Anomaly detection on unlabeled, contaminated data: clustering picks the
    normal subset, an autoencoder trained on it refines the pick.

    The training data holds normal samples *and* anomalies, unlabeled. The
    detector first clusters it and keeps the members of its tightest
    clusters, anomalies gathering in spread-out ones. An autoencoder is
    trained on that subset; every ``reselect_every`` epochs all samples are
    encoded, a Gaussian mixture is fitted on [bottleneck code; cosine
    similarity of the sample and its reconstruction], and the members of its
    low-variance components become the new training subset. Training stops
    when the subset no longer changes. A sample's normality is how well the
    autoencoder reconstructs it (by default the cosine similarity, for
    images).

    Parameters
    ----------
    score_type : {"auto", "cosine", "mse"}, default="auto"
        ``"cosine"``: the cosine similarity of a sample and its
        reconstruction (the paper's). ``"mse"``: minus their mean squared
        difference, often the sharper of the two on images (Fashion-MNIST,
        autoencoder trained on one clean class: 0.889 vs 0.861 AUROC on
        class 0, 0.979 vs 0.953 on class 1). ``"auto"``: the cosine for
        images, the squared error for tabular data, which is standardised
        around zero: there the direction of a sample near the mean is noise
        and the cosine ranks far-away outliers as normal. The rule resolved
        at fit time is also the reconstruction feature of the re-selections.
        Read again at scoring time: ``set_params(score_type=...)`` rescores a
        fitted detector without refitting, and ``decision_function`` then
        uses that rule's offset, kept in ``offsets_`` for both rules.
    init : {"auto", "distribution", "kmeans", "gmm"}, default="auto"
        Clustering behind the initial subset. ``"distribution"``:
        distribution clustering (Lin et al. 2018), whose leftovers are never
        selected; ``"kmeans"`` / ``"gmm"``: scikit-learn's, with
        ``n_init_clusters`` clusters, on the leading 50 principal components
        of wider inputs. ``"auto"``: distribution clustering for images,
        a Gaussian mixture for tabular data (the paper's choices).
    initial_rejection : float in [0, 100), default=35.0
        ``p0`` in the paper: the initial subset leaves out the clusters
        whose variance is above the percentile ``100 - p0`` of the
        cluster variances.
    rejection : float in [0, 100), default=30.0
        ``p``: the same for the mixture components of each re-selection.
    reselect_every : int, default=10
        ``r``: epochs between re-selections.
    n_components : int, default=20
        Components of the Gaussian mixture of each re-selection (capped at
        the number of samples).
    n_init_clusters : int, default=20
        Clusters of the ``"kmeans"`` and ``"gmm"`` initialisations.
    distribution_threshold : float, default=0.1
        ``thres`` of distribution clustering: tolerance on squared distances
        between L2-normalised samples (the paper: 0.1 for MNIST pixels).
    min_cluster_size : int, default=7
        ``min_clus``: smallest distribution cluster kept.
    max_pair_distance : float, default=1.4
        ``max_dist``: distribution clustering stops seeding clusters when the
        closest unassigned pair is farther apart.
    network : {"mlp", "conv"}, default="mlp"
        Autoencoder: fully connected (any input; the paper's) or
        convolutional (images only; two strided stages of 32 and 64
        channels).
    hidden_layer_sizes : tuple of int, default=(512, 256, 128, 60, 10)
        Encoder widths of the MLP autoencoder, the last being the bottleneck
        (the paper's raw-pixel MNIST network); the decoder mirrors them. The
        convolutional autoencoder takes its code size from the last entry.
    epochs : int, default=300
        Most training epochs (the paper's raw-pixel MNIST setting).
    max_rounds : int or None, default=None
        Most re-selections; ``None``: as many as ``epochs`` allows.
    tol : float in [0, 1), default=0.0
        The subset counts as unchanged when at most this share of the
        samples moved in or out of it (the paper: none).
    batch_size : int, default=128
    learning_rate : float, default=1e-3
        Adam's step size.
    image_shape : None, "tabular", (H, W) or (H, W, C), default=None
        How to read flat rows (see :class:`GeometricTransformDetector`).
    contamination, validation_fraction
        As in :class:`GeometricTransformDetector`: ``offset_`` is the
        ``contamination`` quantile of the held-out samples' scores.
    device : str or torch.device, default="auto"
        Where to compute: ``"auto"`` picks CUDA when available, else the CPU.
    mixed_precision : "auto" or bool, default="auto"
        bf16 autocast; ``"auto"`` enables it on CUDA devices that support it.
    verbose : int, default=0
        1 shows a progress bar over the epochs (with the loss and the subset
        size) and over the clustering passes, 2 also over batches.
    random_state : int, RandomState instance or None, default=None
        Seeds the clusterings, the mixtures, weight initialisation and
        shuffling. The same seed on the same device gives the same scores.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained autoencoder (:class:`~skgeoad.networks.MLPAutoencoder` or
        :class:`~skgeoad.networks.ConvAutoencoder`).
    initial_labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample in the initial clustering (``-1``:
        left unassigned by distribution clustering, or held out; see
        ``validation_indices_``).
    selected_ : ndarray of shape (n_samples,), dtype=bool
        The final normal subset of the training samples (held-out samples
        are never selected).
    selection_masks_ : ndarray of shape (n_rounds + 1, n_samples), dtype=bool
        The initial subset, then the subset after each re-selection: with
        ground truth at hand, ``y_normal[mask].mean()`` is each round's purity.
    selection_history_ : list of dict
        Per re-selection: ``round``, ``epoch``, ``n_selected``, ``n_added``,
        ``n_removed``.
    n_rounds_ : int
        Re-selections made.
    converged_ : bool
        Whether training stopped because the subset stopped changing.
    history_ : list of dict
        Per epoch: ``epoch``, ``loss`` (mean squared reconstruction error on
        the subset), ``n_selected`` and, with held-out samples,
        ``validation_loss`` (the same error on them, anomalies included).
    offsets_ : dict
        ``offset_`` of each ``score_type``: the ``contamination`` quantile of
        the held-out samples' scores (of the training scores with
        ``validation_fraction=0``).
    offset_ : float
        Offset of the ``score_type`` the detector was fitted with.
    validation_indices_ : ndarray or None
        Indices of the training samples held out of training to set the
        thresholds (``None`` with ``validation_fraction=0``).
    image_shape_ : tuple of int or None
        ``(H, W, C)`` of the images, ``None`` for tabular data.
    device_ : torch.device
        Device the model lives on.
    n_features_in_ : int
        Number of features (pixel values) per sample.

    See Also
    --------
    GeometricTransformDetector : Needs clean normal data, usually stronger on it.
    sklearn.ensemble.IsolationForest : Unsupervised tree-based detector.

    Notes
    -----
    Choices where the paper is silent, and why:

    * Images enter the autoencoder as intensities in [0, 1] (the scaled
      pixels shifted), with a sigmoid output, as the paper's raw MNIST
      pixels do; the cosine score then weighs the strokes, not the
      background. Distribution clustering runs on them too: centred pixels
      leave all distances near 2 and nothing within ``max_pair_distance``.
      Tabular data is standardised, with tanh activations (the paper's
      choice for static data) and a linear output.
    * The loss is the mean squared error, optimised by Adam.
    * The re-selection's features are standardised before the mixture is
      fitted, so the one cosine feature weighs as much as a code dimension.
      The mixture is seeded the same way each round, so that the subset
      changes only because the features do; the variance of a component is
      that of its members (hard assignments) in the standardised space.
    * The autoencoder keeps training across re-selections (Algorithm 1);
      it is not re-initialised.

    References
    ----------
    .. [1] "Deep End-to-end Unsupervised Anomaly Detection", ICLR 2020
       submission (anonymous).
    .. [2] W.-Y. Lin, S. Liu, J.-H. Lai and Y. Matsushita, "Dimensionality's
       Blessing: Clustering Images by Underlying Distribution", CVPR 2018.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.metrics import roc_auc_score
    >>> from skgeoad import IterativeClusterAEDetector
    >>> from skgeoad.datasets import contaminated
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, is_normal = contaminated(X[:900], y[:900], 0, contamination=0.05)
    >>> detector = IterativeClusterAEDetector(epochs=40, random_state=0).fit(X_train)
    >>> auroc = roc_auc_score(y[900:] == 0, detector.score_samples(X[900:]))
    >>> bool(auroc > 0.9)
    True
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "score_type": [StrOptions({"auto", *SCORE_TYPES})],
        "init": [StrOptions({"auto", "distribution", "kmeans", "gmm"})],
        "initial_rejection": [Interval(Real, 0, 100, closed="left")],
        "rejection": [Interval(Real, 0, 100, closed="left")],
        "reselect_every": [Interval(Integral, 1, None, closed="left")],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "n_init_clusters": [Interval(Integral, 1, None, closed="left")],
        "distribution_threshold": [Interval(Real, 0, None, closed="neither")],
        "min_cluster_size": [Interval(Integral, 2, None, closed="left")],
        "max_pair_distance": [Interval(Real, 0, 4, closed="right")],
        "network": [StrOptions({"mlp", "conv"})],
        "hidden_layer_sizes": [tuple, list],
        "max_rounds": [None, Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
        *,
        score_type="auto",
        init="auto",
        initial_rejection=35.0,
        rejection=30.0,
        reselect_every=10,
        n_components=20,
        covariance_type="diag",
        n_init_clusters=20,
        distribution_threshold=0.1,
        min_cluster_size=7,
        max_pair_distance=1.4,
        network="mlp",
        hidden_layer_sizes=(512, 256, 128, 60, 10),
        epochs=300,
        max_rounds=None,
        tol=0.0,
        batch_size=128,
        learning_rate=1e-3,
        image_shape=None,
        contamination=0.1,
        validation_fraction=0.1,
        device="auto",
        mixed_precision="auto",
        verbose=0,
        random_state=None,
    ):
        self.score_type = score_type
        self.init = init
        self.initial_rejection = initial_rejection
        self.rejection = rejection
        self.reselect_every = reselect_every
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.n_init_clusters = n_init_clusters
        self.distribution_threshold = distribution_threshold
        self.min_cluster_size = min_cluster_size
        self.max_pair_distance = max_pair_distance
        self.network = network
        self.hidden_layer_sizes = hidden_layer_sizes
        self.epochs = epochs
        self.max_rounds = max_rounds
        self.tol = tol
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.image_shape = image_shape
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.verbose = verbose
        self.random_state = random_state

    def fit(self, X, y=None):
        """Find the normal subset of ``X`` and train the autoencoder on it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)
            Unlabeled training data, anomalies included.
        y : Ignored
            Not used: the method is unsupervised (``GridSearchCV`` may pass
            inlier/outlier labels for its scorer).

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return super().fit(X, y)

    # -- fitting -----------------------------------------------------------

    def _autoencoder_input(self, X):
        """Images as intensities in [0, 1] (flat for the MLP), tabular rows as they are."""
        if self.image_shape_ is None:
            return X
        intensities = (X + 1.0) * 0.5
        if self.network == "conv":
            return self._network_input(intensities)
        return intensities.reshape(len(X), -1)

    def _build_network(self, generator):
        sizes = tuple(int(s) for s in self.hidden_layer_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"hidden_layer_sizes must be positive ints, got {self.hidden_layer_sizes!r}.")
        if self.network == "conv":
            if self.image_shape_ is None:
                raise ValueError("network='conv' needs images; X was read as tabular rows (see image_shape).")
            height, width, channels = self.image_shape_

            def factory():
                return ConvAutoencoder(channels, height, width, code_size=sizes[-1])

        else:
            images = self.image_shape_ is not None
            n_features = self.n_features_in_

            def factory():
                return MLPAutoencoder(
                    n_features, sizes, activation="relu" if images else "tanh",
                    output="sigmoid" if images else "linear",
                )  # fmt: skip

        return build_module(factory, generator, self.device_, self._dtype)

    def _initial_selection(self, inputs, rng):
        """Cluster the inputs and keep the low-variance clusters: ``(labels, selected)``."""
        method = self.init
        if method == "auto":
            method = "distribution" if self.image_shape_ is not None else "gmm"
        # On the device even when the data streams: distribution clustering
        # compares every pair of samples, and the same arithmetic on either
        # path keeps the initial subset (and so the model) the same.
        flat = inputs.whole().to(self.device_).reshape(len(inputs), -1)
        seed = int(rng.integers(np.iinfo(np.int32).max))
        if method == "distribution":
            labels = distribution_clustering(
                flat, threshold=self.distribution_threshold, min_cluster_size=self.min_cluster_size,
                max_distance=self.max_pair_distance, random_state=seed, verbose=self.verbose,
            )  # fmt: skip
            space = torch.nn.functional.normalize(flat, dim=1).cpu().numpy()
        else:
            space = _leading_components(flat.cpu().double().numpy(), seed)
            labels = fit_predict_clusters(space, method, min(self.n_init_clusters, len(space)), seed)
        selected = select_low_variance_clusters(space, labels, self.initial_rejection)
        if selected.sum() < 2:
            warnings.warn(
                f"The {method!r} initialisation found no cluster to select (distribution clustering "
                f"assigned {int((labels >= 0).sum())} of {len(labels)} samples); training starts from "
                "all samples. Raise distribution_threshold or max_pair_distance, lower "
                "min_cluster_size, or use init='kmeans'.",
                UserWarning,
                stacklevel=4,
            )
            selected = np.ones(len(labels), dtype=bool)
        return labels, selected

    @torch.inference_mode()
    def _encode(self, inputs, rules=SCORE_TYPES):
        """``(codes, {rule: scores})`` of all ``inputs`` for the score ``rules``, in chunks."""
        self.network_.eval()
        codes, scores = [], {rule: [] for rule in rules}
        size = 4 * self.batch_size
        for start in range(0, len(inputs), size):
            chunk = inputs[start : start + size]
            with autocast(self.device_, self.mixed_precision_):
                code = self.network_.encode(chunk)
                reconstruction = self.network_.decode(code)
            chunk, reconstruction = chunk.flatten(1), reconstruction.to(self._dtype).flatten(1)
            codes.append(code.to(self._dtype))
            for rule, values in scores.items():
                values.append(reconstruction_normality(chunk, reconstruction, rule))
        return torch.cat(codes), {rule: torch.cat(values).cpu().numpy().astype(np.float64) for rule, values in scores.items()}

    def _score_rule(self):
        if self.score_type != "auto":
            return self.score_type
        return "cosine" if self.image_shape_ is not None else "mse"

    def _reselect(self, inputs, seed, rule):
        """The members of the mixture's low-variance components on [code; reconstruction score]."""
        codes, scores = self._encode(inputs, (rule,))
        features = np.column_stack([codes.cpu().double().numpy(), scores[rule]])
        std = features.std(axis=0)
        features = (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)
        labels = fit_predict_clusters(features, "gmm", min(self.n_components, len(features)), seed, self.covariance_type)
        return select_low_variance_clusters(features, labels, self.rejection)

    _score_rules = SCORE_TYPES

    def _fit_tensor(self, X, rng, generator, X_val=None):
        inputs = X.map(self._autoencoder_input)
        self.initial_labels_, selected = self._initial_selection(inputs, rng)
        mixture_seed = int(rng.integers(np.iinfo(np.int32).max))
        self.network_ = self._build_network(generator)
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=self.learning_rate)
        max_rounds = self.max_rounds or self.epochs // self.reselect_every
        rule = self._score_rule()
        masks, self.selection_history_, self.history_ = [selected], [], []
        self.converged_ = False
        subset = torch.as_tensor(np.flatnonzero(selected), device=self.device_)

        def reconstruction_loss(batch):
            return (self.network_(batch) - batch).pow(2).flatten(1).mean(1).sum()

        def batch_loss(items):
            return reconstruction_loss(inputs[subset[items]])

        if X_val is not None:
            inputs_val = X_val.map(self._autoencoder_input)

            def validation_loss(items):
                return reconstruction_loss(inputs_val[items])

        bar = progress(range(self.epochs), self.verbose, desc="autoencoder", unit="epoch")
        for epoch in bar:
            loss = run_epoch(
                self.network_, batch_loss, len(subset), batch_size=self.batch_size,
                optimizer=optimizer, generator=generator, device=self.device_,
                mixed_precision=self.mixed_precision_, verbose=self.verbose, epoch=epoch + 1,
            )  # fmt: skip
            record = {"epoch": epoch + 1, "loss": loss, "n_selected": len(subset)}
            if X_val is not None:
                record["validation_loss"] = evaluate_loss(
                    self.network_, validation_loss, len(X_val), batch_size=4 * self.batch_size,
                    device=self.device_, mixed_precision=self.mixed_precision_,
                )  # fmt: skip
            self.history_.append(record)
            if self.verbose:
                bar.set_postfix(loss=f"{loss:.4f}", selected=len(subset))
            if (epoch + 1) % self.reselect_every or len(masks) > max_rounds:
                continue
            new = self._reselect(inputs, mixture_seed, rule)
            added, removed = int((new & ~selected).sum()), int((selected & ~new).sum())
            self.selection_history_.append(
                {"round": len(masks), "epoch": epoch + 1, "n_selected": int(new.sum()),
                 "n_added": added, "n_removed": removed}
            )  # fmt: skip
            masks.append(new)
            selected = new
            subset = torch.as_tensor(np.flatnonzero(selected), device=self.device_)
            if added + removed <= self.tol * len(selected):
                self.converged_ = True
                break
            if len(masks) > max_rounds:
                break
        self.network_.eval()
        self.initial_labels_ = self._on_all_samples(self.initial_labels_, -1)
        self.selected_ = self._on_all_samples(selected, False)
        self.selection_masks_ = self._on_all_samples(np.stack(masks), False)
        self.n_rounds_ = len(masks) - 1
        return self._encode(inputs)[1] if X_val is None else None

    # -- scoring -----------------------------------------------------------

    def _score_tensor(self, X, rule):
        _, scores = self._encode(X.map(self._autoencoder_input), (rule,))
        return scores[rule]

    def _calibration_scores(self, X, rng=None):
        """Both rules' scores from one pass through the autoencoder."""
        return self._encode(X.map(self._autoencoder_input))[1]


def _leading_components(X, seed):
    """``X`` on its leading principal components when it is wider than ``_MAX_INIT_DIMENSIONS``."""
    from sklearn.decomposition import PCA

    if X.shape[1] <= _MAX_INIT_DIMENSIONS:
        return X
    return PCA(min(_MAX_INIT_DIMENSIONS, len(X) - 1), random_state=seed).fit_transform(X)


__all__ = ["IterativeClusterAEDetector"]
