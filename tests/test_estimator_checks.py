"""scikit-learn's own estimator checks, on the real algorithm with quick settings.

The checks feed small tabular arrays, so they exercise the tabular branch of
each detector (GOAD-style affine maps, MLP classifiers); the image branches
are covered in each detector's own tests.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skgeoad import (
    ADGANDetector,
    GeometricTransformDetector,
    IterativeClusterAEDetector,
    SubClusterDetector,
)

QUICK = dict(hidden_layer_sizes=(16,), epochs=2, device="cpu")


@parametrize_with_checks(
    [
        GeometricTransformDetector(n_affine_transforms=8, affine_dim=8, **QUICK),
        # Without cluster_labels, as the checks call it: k-means sub-clusters.
        SubClusterDetector(n_clusters=3, **QUICK),
        SubClusterDetector(n_clusters=3, score_type="knn", **QUICK),
        ADGANDetector(latent_dim=4, n_seeds=3, n_search_steps=2, batch_size=16, **QUICK),
        # Re-selects after each epoch: the mixture and the rounds run too.
        IterativeClusterAEDetector(
            hidden_layer_sizes=(16, 4), epochs=3, reselect_every=1, n_components=4, device="cpu"
        ),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
