"""Clustering for picking the likely-normal part of unlabeled data.

:func:`distribution_clustering` groups points by their underlying
distribution (Lin et al. 2018) and leaves points that fit no group
unassigned; :func:`select_low_variance_clusters` keeps the members of the
tightest clusters, the selection rule of the iterative clustering +
autoencoder detector; :func:`select_dense_neighbourhoods` keeps the samples
with the densest neighbourhoods, its rule around a feature extractor.
"""

import itertools

import numpy as np
import torch

from ._torch import progress

#: Elements of one block of a distance matrix: bounds the memory of every
#: pass over all pairs (2**24 float32 values = 64 MiB).
_BLOCK_ELEMENTS = 2**24


def cluster_variances(X, labels):
    """Mean squared distance of each cluster's members to their mean.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
        Cluster of each sample; negative labels (unassigned) are ignored.

    Returns
    -------
    clusters : ndarray of shape (n_clusters,)
        The non-negative labels present, sorted.
    variances : ndarray of shape (n_clusters,)

    Examples
    --------
    >>> X = np.array([[0.0], [2.0], [10.0], [10.0], [50.0]])
    >>> cluster_variances(X, np.array([0, 0, 1, 1, -1]))
    (array([0, 1]), array([1., 0.]))
    """
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    clusters = np.unique(labels[labels >= 0])
    variances = np.empty(len(clusters))
    for i, cluster in enumerate(clusters):
        members = X[labels == cluster]
        variances[i] = ((members - members.mean(axis=0)) ** 2).sum(axis=1).mean()
    return clusters, variances


def select_low_variance_clusters(X, labels, rejection):
    """Members of the clusters whose variance is at most the percentile ``100 - rejection``.

    The variance of a cluster is the mean squared distance of its members to
    their mean. High-variance clusters are where anomalies gather, so the
    ``rejection`` percent most spread out clusters are left out (the
    selection rule ``C(X, p)`` of the iterative clustering + autoencoder
    detector, with ``p = rejection``). Unassigned samples (negative labels)
    are never selected.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The space the clusters were found in.
    labels : ndarray of shape (n_samples,)
    rejection : float in [0, 100)
        Percentage of clusters, by variance, to leave out.

    Returns
    -------
    selected : ndarray of shape (n_samples,), dtype=bool

    Examples
    --------
    >>> X = np.array([[0.0], [0.1], [5.0], [5.2], [20.0], [30.0]])
    >>> select_low_variance_clusters(X, np.array([0, 0, 1, 1, 2, 2]), rejection=30)
    array([ True,  True,  True,  True, False, False])
    """
    if not 0 <= rejection < 100:
        raise ValueError(f"rejection must be in [0, 100), got {rejection}.")
    labels = np.asarray(labels)
    clusters, variances = cluster_variances(X, labels)
    if len(clusters) == 0:
        return np.zeros(len(labels), dtype=bool)
    threshold = np.percentile(variances, 100.0 - rejection)
    return np.isin(labels, clusters[variances <= threshold])


def select_dense_neighbourhoods(scores, rejection):
    """The samples whose neighbourhood score is above the percentile ``rejection``.

    The re-selection of the iterative detector around a feature extractor:
    ``scores`` is each sample's mean similarity to its nearest neighbours in
    the current subset (itself left out). The normal class is the dense part
    of the data; the anomalies, a few of each of several other classes, have
    too few of their own kind to fill a neighbourhood, so they score low and
    the ``rejection`` percent lowest samples are left out.

    Examples
    --------
    >>> select_dense_neighbourhoods(np.array([0.9, 0.8, 0.2, 0.85, 0.3]), rejection=30)
    array([ True,  True, False,  True, False])
    """
    if not 0 <= rejection < 100:
        raise ValueError(f"rejection must be in [0, 100), got {rejection}.")
    scores = np.asarray(scores)
    return scores >= np.percentile(scores, rejection)


def fit_predict_clusters(X, method, n_clusters, seed, covariance_type="full"):
    """Hard labels from scikit-learn's k-means (``"kmeans"``) or Gaussian mixture (``"gmm"``).

    Fewer distinct points than clusters, or EM stopping at its iteration
    limit, only leave some clusters empty or rough: the warnings saying so
    are silenced, and callers cope with empty clusters.

    Examples
    --------
    >>> X = np.r_[np.zeros((5, 2)), np.ones((5, 2))]
    >>> fit_predict_clusters(X, "kmeans", 2, seed=0)[[0, 9]].tolist() in ([0, 1], [1, 0])
    True
    """
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        model = KMeans(n_clusters, n_init=10, random_state=seed)
    else:
        model = GaussianMixture(n_clusters, covariance_type=covariance_type, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit_predict(X)


def _blocks(n_rows, n_columns):
    rows = max(1, _BLOCK_ELEMENTS // max(1, n_columns))
    return [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]


def _squared_distances(A, B):
    """Squared Euclidean distances between rows of unit-norm ``A`` and ``B``."""
    return (2.0 - 2.0 * A @ B.T).clamp_(min=0.0)


def _closest_pairs(X, candidates, n_neighbors):
    """Pairs ``(distance, i, j)`` of each candidate with its nearest candidates, closest first.

    Computed block by block: memory stays ``O(block + n * n_neighbors)``.
    """
    points = X[candidates]
    k = min(n_neighbors + 1, len(candidates))
    distances, neighbours = [], []
    for start, stop in _blocks(len(points), len(points)):
        block = _squared_distances(points[start:stop], points)
        # A point is its own nearest neighbour: mask it out.
        block[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")
        values, indices = block.topk(k - 1, dim=1, largest=False)
        distances.append(values)
        neighbours.append(indices)
    if k < 2:
        return np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    distances = torch.cat(distances).cpu().numpy().ravel()
    first = np.repeat(candidates, k - 1)
    second = candidates[torch.cat(neighbours).cpu().numpy().ravel()]
    # Each unordered pair once, closest first.
    keep = first < second
    order = np.argsort(distances[keep], kind="stable")
    return distances[keep][order], first[keep][order], second[keep][order]


def _grow_cluster(X, profiles, seed, available, threshold, max_iterations=100):
    """Members of the cluster grown from the ``seed`` pair among ``available`` points.

    A point joins when its distance profile (its squared distances to the
    reference points) differs from the cluster's mean profile by less than
    ``threshold`` on average, and its mean squared distance to the members
    exceeds the members' own mean pairwise distance by less than
    ``threshold``. The cluster's statistics are recomputed and the growth
    repeated until no point joins.
    """
    members = torch.zeros(len(X), dtype=torch.bool, device=X.device)
    members[list(seed)] = True
    available = torch.as_tensor(available, device=X.device)
    for _ in range(max_iterations):
        size = int(members.sum())
        profile = profiles[members].mean(0)
        centre = X[members].mean(0)
        # For unit vectors, the mean over member pairs (m != m') of
        # |x_m - x_m'|^2 is 2 * size * (1 - |centre|^2) / (size - 1).
        within = 2.0 * size * (1.0 - centre @ centre) / (size - 1)
        candidates = torch.nonzero(available & ~members).squeeze(1)
        if len(candidates) == 0:
            break
        joins = []
        for start, stop in _blocks(len(candidates), profiles.shape[1]):
            block = candidates[start:stop]
            profile_gap = (profiles[block] - profile).abs_().mean(1)
            mean_distance = 2.0 - 2.0 * X[block] @ centre
            joins.append(block[(profile_gap < threshold) & (mean_distance < within + threshold)])
        joins = torch.cat(joins)
        if len(joins) == 0:
            break
        members[joins] = True
    return torch.nonzero(members).squeeze(1).cpu().numpy()


def distribution_clustering(
    X,
    *,
    threshold=0.1,
    min_cluster_size=7,
    max_distance=1.4,
    n_references=2048,
    n_neighbors=16,
    random_state=None,
    verbose=0,
):
    """Group points by their underlying distribution (Lin et al. 2018).

    In high dimensions, the squared distances from a point to the points of
    another distribution concentrate around a value set by the two
    distributions alone, so points of one distribution share a *distance
    profile*. After L2-normalising the rows, clusters are grown greedily:

    1. seed with the closest pair of unassigned points, unless their distance
       profiles differ by more than ``threshold`` on average (then try the
       next pair);
    2. add every unassigned point whose profile differs from the cluster's
       mean profile by less than ``threshold`` and whose mean distance to the
       members is at most ``threshold`` above the members' own mean
       pairwise distance; recompute the cluster's statistics and repeat
       until no point joins;
    3. keep the cluster when it has at least ``min_cluster_size`` members,
       otherwise return its points to the outliers; go back to 1 until the
       closest pair left is farther apart than ``max_distance``.

    What no cluster takes is left unassigned (label -1): the method's
    outliers.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Features; a tensor is clustered on its own device.
    threshold : float, default=0.1
        Tolerance on squared distances of unit vectors (which lie in
        [0, 4]). The paper's values: 0.1 for MNIST pixels, 0.06 for CIFAR-10
        features.
    min_cluster_size : int, default=7
        Smallest cluster kept (MNIST: 7, CIFAR-10: 5).
    max_distance : float, default=1.4
        Seeding stops when the closest unassigned pair is farther apart.
    n_references : int, default=2048
        Points the distance profiles are measured against, drawn at random
        when there are more samples. The profile difference is a mean over
        the references, so a sample estimates it closely, and memory stays
        ``O(n_samples * n_references)`` instead of the ``O(n_samples**2)`` of
        the authors' full distance matrix.
    n_neighbors : int, default=16
        Nearest neighbours per point considered as seed pairs in one pass;
        the pairs are recomputed among the remaining points when a pass runs
        out.
    random_state : int, RandomState instance or None, default=None
        Draws the reference points.
    verbose : int, default=0
        Show a progress bar over the passes.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Cluster of each sample, ``-1`` for unassigned.

    Notes
    -----
    Deviations from the authors' MATLAB code, on purpose: profiles are
    measured against a random subset of at most ``n_references`` points,
    and the mean-distance test is one-sided (a point closer to the cluster
    than its members are to each other is always close enough). Seed pairs
    come from each point's ``n_neighbors`` nearest neighbours, computed block
    by block, so memory stays bounded for tens of thousands of samples.

    References
    ----------
    .. [1] W.-Y. Lin, S. Liu, J.-H. Lai and Y. Matsushita, "Dimensionality's
       Blessing: Clustering Images by Underlying Distribution", CVPR 2018.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(size=(2, 200))
    >>> X = np.vstack([c + 0.3 * rng.normal(size=(30, 200)) for c in centres])
    >>> labels = distribution_clustering(X, random_state=0)
    >>> [len(set(labels[:30])), len(set(labels[30:])), bool(labels[0] != labels[30])]
    [1, 1, True]
    """
    from sklearn.utils import check_random_state

    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X, dtype=np.float64))
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {tuple(X.shape)}.")
    X = torch.nn.functional.normalize(X.to(torch.float64 if X.dtype == torch.float64 else torch.float32), dim=1)
    n_samples = len(X)
    rng = check_random_state(random_state)
    references = np.sort(rng.permutation(n_samples)[: min(n_references, n_samples)])
    reference_points = X[torch.as_tensor(references, device=X.device)]
    profiles = torch.cat(
        [_squared_distances(X[start:stop], reference_points) for start, stop in _blocks(n_samples, len(references))]
    )

    labels = np.full(n_samples, -1, dtype=np.int64)
    available = np.ones(n_samples, dtype=bool)
    bar = progress(itertools.count(), verbose, desc="distribution clustering", unit="pass")
    for _ in bar:
        distances, first, second = _closest_pairs(X, np.flatnonzero(available), n_neighbors)
        within_reach = distances <= max_distance
        first, second = first[within_reach], second[within_reach]
        if len(first) == 0:
            break
        # The profile test of a pair does not depend on the clusters: all at once.
        gaps = torch.cat(
            [
                (profiles[first[start:stop]] - profiles[second[start:stop]]).abs_().mean(1)
                for start, stop in _blocks(len(first), profiles.shape[1])
            ]
        )
        seedable = (gaps <= threshold).cpu().numpy()
        formed = 0
        for i, j in zip(first[seedable], second[seedable]):
            if not (available[i] and available[j]):
                continue
            members = _grow_cluster(X, profiles, (i, j), available, threshold)
            available[members] = False
            if len(members) >= min_cluster_size:
                labels[members] = labels.max() + 1
            formed += 1
        if verbose:
            bar.set_postfix(clusters=int(labels.max()) + 1, unassigned=int((labels < 0).sum()))
        if formed == 0:
            break
    return labels


__all__ = [
    "cluster_variances",
    "distribution_clustering",
    "fit_predict_clusters",
    "select_dense_neighbourhoods",
    "select_low_variance_clusters",
]
