import numpy as np
import pytest

from skgeoad.datasets import load_digits_split


@pytest.fixture(scope="session")
def digits():
    """The benchmark's digits split, pixels scaled to [-1, 1], images (n, 8, 8)."""
    X_train, y_train, X_test, y_test = load_digits_split()
    return X_train / 8.0 - 1.0, y_train, X_test / 8.0 - 1.0, y_test


@pytest.fixture(scope="session")
def quick_params():
    """Image settings that train in well under a second on 8x8 digits."""
    return dict(transformations="rotations", widen_factor=1, epochs=10, device="cpu", random_state=0)


@pytest.fixture(scope="session")
def fitted_on_nines(digits, quick_params):
    from skgeoad import GeometricTransformDetector

    X_train, y_train, _, _ = digits
    # Float32: tests check its scores against brute-force float32 arithmetic.
    return GeometricTransformDetector(**quick_params, mixed_precision=False).fit(X_train[y_train == 9])


@pytest.fixture
def rng():
    return np.random.default_rng(0)
