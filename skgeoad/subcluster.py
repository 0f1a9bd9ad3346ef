"""Anomaly detection with a classifier over sub-clusters of the normal data (Lee & Lee)."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_consistent_length
from sklearn.utils._param_validation import Interval, StrOptions

from ._scoring import blocked_knn_normality, cluster_logits, sample_features, scores_to_numpy, softmax_normality
from ._torch import autocast, build_module, full_precision, fused, progress, train_classifier
from .base import BaseDeepDetector
from .clustering import fit_predict_clusters
from .networks import MLP, SmallCNN, WideResNet
from .transforms import TRANSFORMATION_SETS, GeometricTransformations

SCORE_TYPES = ("msp", "odin", "kl", "knn")

#: Elements of one chunk-by-training-set similarity matrix in the k-NN score.
_KNN_BLOCK = 2**24

#: ``torch.cdist`` computing each distance from the differences (as fast on a CPU).
_EXACT_DISTANCES = "donot_use_mm_for_euclid_dist"


class SubClusterDetector(BaseDeepDetector):
    """Anomaly detection from a classifier of the normal data's sub-clusters (Lee & Lee).

    Normal data is rarely one tight blob: it is made of sub-clusters (the
    sub-classes of a super-class, the digits of a set of digits). A classifier
    trained to tell the sub-clusters apart learns features that separate
    *semantic* anomalies too; its confidence, or the distance to the nearest
    training samples in its feature space, is the normality score.

    Parameters
    ----------
    score_type : {"msp", "odin", "kl", "knn"}, default="msp"
        ``"msp"``: the maximum softmax probability (Hendrycks & Gimpel; the
        paper's MAX). ``"odin"``: the maximum softmax at ``temperature`` of
        the input nudged by ``epsilon`` against the gradient of the
        cross-entropy with its predicted sub-cluster (Liang et al.).
        ``"kl"``: the KL divergence of the softmax from the uniform
        distribution (the score of SSL, Hendrycks et al.). ``"knn"``: the
        similarity to the ``n_neighbors`` nearest training samples in the
        classifier's penultimate feature space (the paper's Test 5). All are
        oriented so that higher is more normal. The rule is read at scoring
        time: ``set_params(score_type="odin")`` rescores a fitted detector
        without refitting, and ``decision_function`` then uses that rule's
        offset, kept in ``offsets_`` for every rule.
    n_clusters : int, default=5
        Sub-clusters to find with k-means when ``fit`` gets no
        ``cluster_labels``. Capped at the number of samples.
    transformations : {None, "rotations", "flips_rotations", "translations_rotations", "all"}, default=None
        A self-supervised auxiliary task (beyond the paper; Hendrycks et al.,
        2019, with GEOM's transformations, see
        :class:`GeometricTransformDetector`): the classifier learns the joint
        label (sub-cluster, transformation) of every transformation of every
        image, so that its features keep what tells the transformations apart,
        not only what tells the sub-clusters apart. The softmax rules then
        read the sub-cluster probabilities of the untransformed image (the
        joint softmax summed over the transformations), and ``"knn"`` compares
        the features of all transformations, as GEOM's k-NN score does. Each
        epoch passes over every transformation of every image: ``"rotations"``
        costs four times the training, ``"all"`` (72) seventy-two times, so
        lower ``epochs`` with it: ``epochs=3`` (GEOM's ``ceil(200 / 72)``;
        216 passes over the data, about twice the training time of 30 epochs
        of rotations) gave the best k-NN scores measured on Fashion-MNIST
        with several normal classes (see the benchmarks page). Images only.
    network : {"auto", "cnn", "wrn"}, default="auto"
        Classifier for images: ``"cnn"`` is two convolutional and two fully
        connected layers (the paper's MNIST network), ``"wrn"`` the Wide
        ResNet (the paper's CIFAR network); ``"auto"`` takes the CNN for grey
        images up to 32x32 and the Wide ResNet otherwise. Tabular data always
        uses an MLP.
    depth, widen_factor : int, default=10, 2
        Wide ResNet size (the paper uses WRN-28-10 on CIFAR-10, hours per
        class on a CPU).
    hidden_layer_sizes : tuple of int, default=(128,)
        Hidden layers of the MLP (tabular data).
    epochs : int, default=30
        Training epochs (the paper: 200, on GPUs).
    batch_size : int, default=128
        Samples per step; scoring runs in chunks of a few batches.
    learning_rate : float, default=0.01
        Initial learning rate of SGD with momentum 0.9, annealed to 0 with a
        cosine schedule over the epochs, as in the paper. The paper starts at
        0.1 for a WRN-28-10 on CIFAR-10; on small data that made the small CNN
        overconfident on anomalies too (digits 0-1 normal, 5-9 anomalous: MSP
        AUROC 0.67 at 0.1, 0.96 at 0.01).
    weight_decay : float, default=5e-4
        L2 penalty of SGD.
    temperature : float, default=1000.0
        ODIN's softmax temperature.
    epsilon : float, default=0.0014
        ODIN's perturbation size, in the scaled input units ([-1, 1] for images).
    n_neighbors : int, default=3
        Neighbours of the k-NN score (the paper uses 3 or 300).
    knn_max_samples : int or "auto", default="auto"
        Training samples whose features the k-NN score keeps as its
        reference, a random subset when fewer than the samples trained on;
        ``"auto"`` keeps as many as fit 64 MiB (131,072 samples of the CNN's
        128 features; with ``transformations``, 1 / ``n_transforms_`` of
        that).
    metric : {"cosine", "euclidean"}, default="cosine"
        Similarity of the k-NN score: mean cosine similarity, or minus the mean
        Euclidean distance, to the nearest training features.
    image_shape, contamination, validation_fraction, device, mixed_precision, verbose, random_state
        As in :class:`GeometricTransformDetector`.

    Attributes
    ----------
    network_ : torch.nn.Module or None
        The trained sub-cluster classifier (``None`` for a single sub-cluster
        without ``transformations``).
    transformations_ : torch.nn.Module or None
        The transformations of the auxiliary task (``None`` without one).
    n_transforms_ : int
        Their number (1 without them); the classifier has
        ``len(clusters_) * n_transforms_`` outputs, sub-cluster major.
    embedding_ : tuple of torch.Tensor
        Mean and components of the PCA embedding used by k-means and by the
        single-cluster fallback.
    clusters_ : ndarray
        The sub-cluster labels, in the order of the classifier's outputs.
    cluster_labels_ : ndarray of shape (n_samples,)
        Index into ``clusters_`` of each training sample; for a held-out
        sample, the sub-cluster its label names (without labels, that of the
        nearest sub-cluster mean), ``-1`` when the training part has none.
    train_features_ : torch.Tensor of shape (n_samples, n_features_out)
        Penultimate features of the samples trained on, at most
        ``knn_max_samples`` of them (the k-NN score's reference; PCA
        features for a single sub-cluster). With
        ``transformations``, those of each transformation, L2-normalised,
        concatenated and divided by ``sqrt(n_transforms_)``.
    offsets_ : dict
        ``offset_`` of each ``score_type``: the ``contamination`` quantile of
        the held-out samples' scores (of the training scores with
        ``validation_fraction=0``).
    offset_ : float
        Offset of the ``score_type`` the detector was fitted with.
    history_ : list of dict
        Per epoch: mean training ``loss`` and, with held-out samples,
        ``validation_loss`` (on the held-out samples of sub-clusters the
        training part has).
    validation_indices_, image_shape_, device_, n_features_in_
        As in :class:`GeometricTransformDetector`.

    See Also
    --------
    GeometricTransformDetector : Self-supervised, for one normal class.

    Notes
    -----
    Given labels are the paper's main setting (Tests 1-4). Without them the
    sub-clusters come from k-means on a PCA projection (50 components at
    most) of the scaled inputs: fast and adequate when the sub-clusters differ
    in appearance, as digits do; the paper uses an instance-discrimination
    embedding (ISIF) there.

    A single sub-cluster (``cluster_labels`` with one value, or
    ``n_clusters=1``) leaves a classifier nothing to learn. The detector then
    trains none (``network_`` is ``None``) and every ``score_type`` is the
    k-NN score in that PCA embedding, with Euclidean distance whatever
    ``metric`` says: a strong classic baseline, and the sensible limit of the
    method. With ``transformations`` the classifier still learns them (the
    setting of :class:`GeometricTransformDetector`), and every
    ``score_type`` is the k-NN score on its features.

    References
    ----------
    .. [1] G. Lee and S. Lee, "Sub-clusters of Normal Data for Anomaly Detection".
    .. [2] D. Hendrycks and K. Gimpel, "A Baseline for Detecting Misclassified and
       Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    .. [3] S. Liang, Y. Li and R. Srikant, "Enhancing the Reliability of
       Out-of-distribution Image Detection in Neural Networks", ICLR 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.metrics import roc_auc_score
    >>> from skgeoad import SubClusterDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> normal = y < 3                       # digits 0, 1 and 2 are normal
    >>> detector = SubClusterDetector(epochs=10, random_state=0)
    >>> detector = detector.fit(X[:900][normal[:900]], cluster_labels=y[:900][normal[:900]])
    >>> auroc = roc_auc_score(normal[900:], detector.score_samples(X[900:]))
    >>> bool(auroc > 0.85)                  # measured 0.90 (seed 1: 0.91)
    True
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "score_type": [StrOptions(set(SCORE_TYPES))],
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "transformations": [None, StrOptions(set(TRANSFORMATION_SETS))],
        "network": [StrOptions({"auto", "cnn", "wrn"})],
        "depth": [Interval(Integral, 4, None, closed="left")],
        "widen_factor": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": [tuple, list],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "knn_max_samples": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "euclidean"})],
    }

    def __init__(
        self,
        *,
        score_type="msp",
        n_clusters=5,
        transformations=None,
        network="auto",
        depth=10,
        widen_factor=2,
        hidden_layer_sizes=(128,),
        epochs=30,
        batch_size=128,
        learning_rate=0.01,
        weight_decay=5e-4,
        temperature=1000.0,
        epsilon=0.0014,
        n_neighbors=3,
        knn_max_samples="auto",
        metric="cosine",
        image_shape=None,
        contamination=0.1,
        validation_fraction=0.1,
        device="auto",
        mixed_precision="auto",
        verbose=0,
        random_state=None,
    ):
        self.score_type = score_type
        self.n_clusters = n_clusters
        self.transformations = transformations
        self.network = network
        self.depth = depth
        self.widen_factor = widen_factor
        self.hidden_layer_sizes = hidden_layer_sizes
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.epsilon = epsilon
        self.n_neighbors = n_neighbors
        self.knn_max_samples = knn_max_samples
        self.metric = metric
        self.image_shape = image_shape
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.verbose = verbose
        self.random_state = random_state

    def fit(self, X, y=None, cluster_labels=None):
        """Fit the sub-cluster classifier on normal data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)
            Normal training data.
        y : Ignored
            Not used, present for API consistency by convention (so that
            ``GridSearchCV`` can pass inlier/outlier labels to its scorer).
        cluster_labels : array-like of shape (n_samples,) or (n_samples, 1), optional
            Sub-cluster of each sample (e.g. its sub-class). ``None``: found by
            k-means with ``n_clusters``.

        Returns
        -------
        self : object
        """
        if cluster_labels is not None:
            cluster_labels = np.asarray(cluster_labels)
            if cluster_labels.ndim == 2 and cluster_labels.shape[1] == 1:
                cluster_labels = cluster_labels.ravel()
            if cluster_labels.ndim != 1:
                raise ValueError(
                    "cluster_labels must hold one label per sample, shape (n_samples,) or (n_samples, 1); "
                    f"got shape {cluster_labels.shape}."
                )
            check_consistent_length(X, cluster_labels)
        return super().fit(X, y, cluster_labels=cluster_labels)

    def _split_labels(self, cluster_labels=None):
        return cluster_labels

    # -- fitting -----------------------------------------------------------

    def _fit_embedding(self, X, rng):
        """PCA of the scaled inputs (at most 50 components), as tensors on the device."""
        from sklearn.decomposition import PCA

        flat = X.whole().reshape(len(X), -1).cpu().double().numpy()
        n_components = min(50, flat.shape[1], len(flat) - 1)
        pca = PCA(n_components, random_state=int(rng.integers(np.iinfo(np.int32).max))).fit(flat)
        as_tensor = lambda a: torch.as_tensor(a, dtype=self._dtype, device=self.device_)  # noqa: E731
        return as_tensor(pca.mean_), as_tensor(pca.components_.T)

    def _embed(self, X):
        mean, components = self.embedding_
        return (X.reshape(len(X), -1) - mean) @ components

    def _find_clusters(self, X, cluster_labels, rng):
        """Sub-cluster indices of the training samples, from labels or k-means."""
        if cluster_labels is not None:
            cluster_labels = np.asarray(cluster_labels)
            check_consistent_length(X, cluster_labels)
            return np.unique(cluster_labels, return_inverse=True)
        if self.n_clusters == 1:
            return np.zeros(1, dtype=int), np.zeros(len(X), dtype=int)
        embedded = torch.cat([self._embed(chunk) for chunk in self._chunks(X)]).cpu().numpy()
        n_clusters = min(self.n_clusters, len(X))
        seed = int(rng.integers(np.iinfo(np.int32).max))
        # Empty clusters are fine: the classifier just never sees those labels.
        codes = fit_predict_clusters(embedded, "kmeans", n_clusters, seed)
        return np.unique(codes, return_inverse=True)

    def _build_network(self, n_classes, generator):
        if self.image_shape_ is None:
            in_features = self.n_features_in_

            def factory():
                return MLP(in_features, n_classes, tuple(self.hidden_layer_sizes))

        else:
            height, width, channels = self.image_shape_
            use_cnn = self.network == "cnn" or (self.network == "auto" and channels == 1 and max(height, width) <= 32)
            if use_cnn:

                def factory():
                    return SmallCNN(channels, n_classes)

            else:

                def factory():
                    return WideResNet(channels, n_classes, self.depth, self.widen_factor)

        return build_module(factory, generator, self.device_, self._dtype)

    def _fit_tensor(self, X, rng, generator, X_val=None, cluster_labels=None, cluster_labels_val=None):
        self.transformations_ = self._build_transformations()
        self.n_transforms_ = 1 if self.transformations_ is None else self.transformations_.n_transforms
        self.embedding_ = self._fit_embedding(X, rng)
        self.clusters_, codes = self._find_clusters(X, cluster_labels, rng)
        self.cluster_labels_ = codes
        validation = None
        if X_val is not None:
            codes_val = self._held_out_codes(X, codes, X_val, cluster_labels_val)
            validation = (X_val, codes_val)
            self.cluster_labels_ = self._on_all_samples(codes, -1)
            self.cluster_labels_[self.validation_indices_] = codes_val
        if len(self.clusters_) == 1 and self.transformations_ is None:
            # One sub-cluster leaves the classifier nothing to learn: score by
            # k-NN similarity in the PCA embedding instead.
            self.network_, self.history_ = None, []
        else:
            self.network_ = self._build_network(len(self.clusters_) * self.n_transforms_, generator)
            self.history_ = self._train(X, torch.as_tensor(codes, device=self.device_), generator, validation)
        reference, start, in_reference = [], 0, None
        for _, features in self._forward(X):
            if in_reference is None:
                in_reference = self._knn_reference_mask(len(X), features.shape[1], rng)
            reference.append(features[in_reference[start : start + len(features)]])
            start += len(features)
        self.train_features_ = torch.cat(reference)
        if X_val is not None:
            return None
        # Without held-out samples, training samples are scored as any sample
        # is, their own match included in the k-NN score, so that
        # predict(X_train) flags exactly a `contamination` share of them.
        return {rule: self._score_tensor(X, rule) for rule in SCORE_TYPES}

    def _build_transformations(self):
        if self.transformations is None:
            return None
        if self.image_shape_ is None:
            raise ValueError(
                f"transformations={self.transformations!r} transforms images, and these samples are "
                "tabular rows: leave transformations=None, or pass images (see image_shape)."
            )
        height, width, _ = self.image_shape_
        return GeometricTransformations(height, width, self.transformations).to(self.device_)

    def _held_out_codes(self, X, codes, X_val, labels_val):
        """Sub-cluster index of each held-out sample, ``-1`` where it has none.

        Given labels are looked up among the training sub-clusters (a label
        the training part lacks gets ``-1``); k-means sub-clusters are
        assigned to the nearest training sub-cluster mean in the embedding,
        as k-means itself assigns them.
        """
        if labels_val is not None:
            position = np.searchsorted(self.clusters_, labels_val).clip(0, len(self.clusters_) - 1)
            return np.where(self.clusters_[position] == labels_val, position, -1)
        embedded = torch.cat([self._embed(chunk) for chunk in self._chunks(X)])
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(codes, device=self.device_), len(self.clusters_))
        one_hot = one_hot.to(embedded.dtype)
        means = (one_hot.T @ embedded) / one_hot.sum(0).clamp_min(1)[:, None]
        held_out = torch.cat([self._embed(chunk) for chunk in self._chunks(X_val)])
        return torch.cdist(held_out, means).argmin(1).cpu().numpy()

    def _train(self, X, targets, generator, validation=None):
        optimizer = torch.optim.SGD(
            self.network_.parameters(), lr=self.learning_rate, momentum=0.9,
            weight_decay=self.weight_decay, **fused(self.device_),
        )  # fmt: skip
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)

        n_transforms = self.n_transforms_

        def batches_of(data, targets):
            def make_batch(items):
                if n_transforms == 1:
                    return self._network_input(data[items]), targets[items]
                # Item i * T + t: transformation t of sample i, joint label (sub-cluster, t).
                samples, transforms = items // n_transforms, items % n_transforms
                images = self.transformations_(data[samples], transforms)
                return images, targets[samples] * n_transforms + transforms

            return make_batch

        if validation is not None:
            X_val, codes_val = validation
            # Held-out samples of a sub-cluster the training part lacks have no target.
            known = np.flatnonzero(codes_val >= 0)
            targets_val = torch.as_tensor(codes_val[known], device=self.device_)
            n_items = len(known) * n_transforms
            validation = (batches_of(X_val.subset(known), targets_val), n_items) if len(known) else None
        return train_classifier(
            self.network_, batches_of(X, targets), len(X) * n_transforms, epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=optimizer, scheduler=scheduler, generator=generator, device=self.device_,
            validation=validation, mixed_precision=self.mixed_precision_, verbose=self.verbose,
        )  # fmt: skip

    # -- scoring -----------------------------------------------------------

    def _chunks(self, X, size=None):
        """Consecutive chunks of ``X`` (a tensor or device data), ``4 * batch_size`` by default."""
        size = size or 4 * self.batch_size
        return (X[start : start + size] for start in range(0, len(X), size))

    @torch.inference_mode()
    def _forward(self, X, transformed=True):
        """Yield ``(logits, features)`` for chunks of ``X``: sub-cluster logits and
        penultimate features.

        Without a classifier (a single sub-cluster) the features are the PCA
        embedding and the logits ``None``. With ``transformations``, the
        logits are those of the untransformed image (:func:`cluster_logits`)
        and the features those of every transformation (see
        ``train_features_``), or, without ``transformed``, of the
        untransformed image only (what the softmax rules need, for
        ``1 / n_transforms_`` of the cost).
        """
        if self.network_ is None:
            yield from ((None, self._embed(chunk)) for chunk in self._chunks(X))
            return
        self.network_.eval()
        n_transforms = self._n_transforms() if transformed else 1
        size = max(1, 4 * self.batch_size // n_transforms)
        for start in progress(range(0, len(X), size), self.verbose > 1, desc="scoring", unit="chunk"):
            chunk = X[start : start + size]
            if n_transforms == 1:
                images = self._network_input(chunk)
            else:
                images = self.transformations_.expand(chunk)
            with autocast(self.device_, self.mixed_precision_):
                features = self.network_.forward_features(images)
                logits = self.network_.forward_head(features)
            logits, features = logits.to(self._dtype), features.to(self._dtype)
            if n_transforms > 1:
                # Row i * T holds the untransformed sample i (the identity is transformation 0).
                logits = logits[::n_transforms]
                features = sample_features(features, n_transforms)
            yield cluster_logits(logits, self._n_transforms()), features

    def _odin(self, chunk):
        """ODIN's score: max softmax at temperature T of the input moved by epsilon.

        The step ``-epsilon * sign(grad_x CE(f(x) / T, argmax f(x)))`` makes the
        predicted sub-cluster more likely; in-distribution inputs respond more.
        Every sample's gradient is its own (BatchNorm in eval mode), so the
        whole chunk goes through one backward pass. Never in bf16 (the
        precision policy in ``skgeoad._torch``): the logits / 1000 and the
        0.0014 step are below its resolution.
        """
        x = self._network_input(chunk).detach().clone().requires_grad_(True)
        n_transforms = self._n_transforms()
        with torch.enable_grad(), full_precision(self.device_):
            logits = cluster_logits(self.network_(x).to(self._dtype), n_transforms) / self.temperature
            loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1), reduction="sum")
            (gradient,) = torch.autograd.grad(loss, x)
        with torch.inference_mode(), full_precision(self.device_):
            logits = self.network_(x.detach() - self.epsilon * gradient.sign()).to(self._dtype)
        return torch.softmax(cluster_logits(logits, n_transforms) / self.temperature, dim=1).amax(1)

    def _n_transforms(self):
        """``n_transforms_``; 1 for a model fitted before ``transformations`` existed."""
        return getattr(self, "n_transforms_", 1)

    def _knn_metric(self):
        # Angles between centred PCA coordinates say little about nearness:
        # the single-cluster fallback measures Euclidean distance.
        return "euclidean" if self.network_ is None else self.metric

    def _knn_reference(self):
        """The reference as the k-NN score compares with it (unit rows for the cosine)."""
        if self._knn_metric() == "cosine":
            return torch.nn.functional.normalize(self.train_features_, dim=1)
        return self.train_features_

    def _knn(self, features, reference=None):
        """Similarity of each feature vector to its nearest training features
        (``reference``: from :meth:`_knn_reference`, prepared once per scoring call)."""
        reference = self._knn_reference() if reference is None else reference
        k = min(self.n_neighbors, len(reference))
        if self._knn_metric() == "cosine":
            return blocked_knn_normality(torch.nn.functional.normalize(features, dim=1), reference, k)
        per_block = max(1, _KNN_BLOCK // len(reference))
        scores = []
        for block in self._chunks(features, per_block):
            # Differences, not ||a||^2 - 2ab + ||b||^2: that expansion (torch's default for
            # large inputs) loses the small distances to near neighbours to cancellation
            # (errors up to 1e-3 relative on digits, which no other implementation, an
            # exported ONNX graph included, reproduces).
            similarity = -torch.cdist(block, reference, compute_mode=_EXACT_DISTANCES)
            scores.append(similarity.topk(k, dim=1).values.mean(1))
        return torch.cat(scores)

    _score_rules = SCORE_TYPES

    def _score_tensor(self, X, rule):
        if len(self.clusters_) == 1:
            # One sub-cluster: the softmax rules have nothing to say (probability 1).
            rule = "knn"
        if rule == "odin":
            self.network_.eval()
            return scores_to_numpy([self._odin(chunk) for chunk in self._chunks(X)])
        reference = self._knn_reference() if rule == "knn" else None
        scores = []
        for logits, features in self._forward(X, transformed=rule == "knn"):
            scores.append(self._knn(features, reference) if rule == "knn" else softmax_normality(logits, rule))
        return scores_to_numpy(scores)
