import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from skgeoad import clustering
from skgeoad.clustering import (
    cluster_variances,
    distribution_clustering,
    select_low_variance_clusters,
)


@pytest.fixture(scope="module")
def blobs_with_outliers():
    """Four tight non-negative blobs in 200-D (40 points each) and 6 isolated points."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1, size=(4, 200)) ** 4
    blobs = np.vstack([c + 0.02 * rng.uniform(size=(40, 200)) for c in centres])
    outliers = rng.uniform(0, 1, size=(6, 200)) ** 4
    X = np.vstack([blobs, outliers])
    truth = np.r_[np.repeat(np.arange(4), 40), np.full(6, -1)]
    return X, truth


def test_cluster_variances_is_mean_squared_distance_to_the_mean(rng):
    X = rng.normal(size=(30, 3))
    labels = np.r_[np.zeros(10, int), np.ones(15, int), np.full(5, -1)]
    clusters, variances = cluster_variances(X, labels)
    assert list(clusters) == [0, 1]
    for cluster, variance in zip(clusters, variances):
        members = X[labels == cluster]
        expected = np.mean(np.sum((members - members.mean(0)) ** 2, axis=1))
        assert variance == pytest.approx(expected)


def test_selection_leaves_out_the_most_spread_clusters_and_the_unassigned(rng):
    spreads = np.array([0.1, 0.2, 0.3, 0.4, 5.0])
    X = np.vstack([s * rng.normal(size=(20, 2)) for s in spreads] + [rng.normal(size=(3, 2))])
    labels = np.r_[np.repeat(np.arange(5), 20), np.full(3, -1)]
    selected = select_low_variance_clusters(X, labels, rejection=20)
    assert selected[:80].all() and not selected[80:].any()
    # rejection=0 keeps every cluster but still never the unassigned points.
    assert select_low_variance_clusters(X, labels, rejection=0).sum() == 100
    assert not select_low_variance_clusters(X, np.full(len(X), -1), rejection=10).any()
    with pytest.raises(ValueError, match="rejection"):
        select_low_variance_clusters(X, labels, rejection=100)


def test_distribution_clustering_finds_the_blobs_and_leaves_outliers_unassigned(blobs_with_outliers):
    X, truth = blobs_with_outliers
    labels = distribution_clustering(X, random_state=0)
    assert (labels[truth >= 0] >= 0).all()
    assert (labels[truth < 0] == -1).all()
    assert adjusted_rand_score(truth[truth >= 0], labels[truth >= 0]) == 1.0


def test_distribution_clustering_is_the_same_in_small_blocks_and_on_tensors(blobs_with_outliers, monkeypatch):
    X, _ = blobs_with_outliers
    expected = distribution_clustering(X, random_state=0)
    assert np.array_equal(distribution_clustering(torch.as_tensor(X), random_state=0), expected)
    monkeypatch.setattr(clustering, "_BLOCK_ELEMENTS", 500)
    assert np.array_equal(distribution_clustering(X, random_state=0), expected)


def test_distribution_clustering_with_sampled_references_finds_the_same_blobs(blobs_with_outliers):
    X, truth = blobs_with_outliers
    labels = distribution_clustering(X, n_references=40, n_neighbors=4, random_state=1)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_distribution_clustering_parameters_bound_what_is_kept(blobs_with_outliers):
    X, truth = blobs_with_outliers
    # Clusters smaller than min_cluster_size go back to the outliers.
    assert (distribution_clustering(X, min_cluster_size=41, random_state=0) == -1).all()
    # Nothing is seeded when no pair is that close.
    assert (distribution_clustering(X, max_distance=1e-6, random_state=0) == -1).all()
    with pytest.raises(ValueError, match="2-D"):
        distribution_clustering(X[0])


def test_distribution_clustering_does_not_merge_distributions_with_the_same_mean_direction(rng):
    # Two distributions around the same direction but of different spread:
    # their distance profiles differ, so they must not share a cluster.
    centre = rng.uniform(0.5, 1.0, size=300)
    tight = centre + 0.01 * rng.normal(size=(50, 300))
    loose = centre + 0.3 * rng.normal(size=(50, 300))
    labels = distribution_clustering(np.vstack([tight, loose]), threshold=0.05, random_state=0)
    assert len(set(labels[:50])) == 1 and labels[0] >= 0
    assert labels[0] not in set(labels[50:])
