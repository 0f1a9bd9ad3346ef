"""scikit-learn's own estimator checks, on the real algorithm with quick settings.

The checks feed small tabular arrays, so they exercise the GOAD-style affine
branch of the geometric detector; the image branch is covered in
test_geometric.py.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skgeoad import GeometricTransformDetector

QUICK = dict(n_affine_transforms=8, affine_dim=8, hidden_layer_sizes=(16,), epochs=2, device="cpu")


@parametrize_with_checks([GeometricTransformDetector(**QUICK)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
