import numpy as np
import pytest
from scipy.special import digamma

from skgeoad.dirichlet import PROBABILITY_FLOOR, fit_dirichlet, inverse_digamma, wicker_alpha


@pytest.mark.parametrize(
    "alpha",
    [[2.0, 5.0, 1.0], [0.3, 0.5, 0.8, 0.2], [40.0, 10.0, 25.0, 5.0, 60.0]],
)
def test_recovers_known_alphas_within_5_percent(alpha):
    alpha = np.array(alpha)
    p = np.random.default_rng(0).dirichlet(alpha, size=20_000)
    estimate = fit_dirichlet(p.mean(0), np.log(p).mean(0))
    np.testing.assert_allclose(estimate, alpha, rtol=0.05)


def test_batched_estimation_equals_one_at_a_time():
    rng = np.random.default_rng(1)
    alphas = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]])
    samples = np.stack([rng.dirichlet(a, size=5000) for a in alphas])
    batched = fit_dirichlet(samples.mean(1), np.log(samples).mean(1))
    for i in range(2):
        single = fit_dirichlet(samples[i].mean(0), np.log(samples[i]).mean(0))
        np.testing.assert_allclose(batched[i], single, rtol=1e-8)


def test_wicker_start_is_already_close():
    alpha = np.array([3.0, 1.0, 2.0])
    p = np.random.default_rng(2).dirichlet(alpha, size=20_000)
    np.testing.assert_allclose(wicker_alpha(p.mean(0), np.log(p).mean(0)), alpha, rtol=0.25)


def test_inverse_digamma_inverts_digamma():
    x = np.array([1e-3, 0.1, 0.5, 1.0, 3.0, 50.0, 1e4])
    np.testing.assert_allclose(inverse_digamma(digamma(x)), x, rtol=1e-10)


def test_probabilities_with_zeros_give_finite_alphas():
    p = np.random.default_rng(3).dirichlet([0.05, 0.05, 5.0], size=2000)
    p[:50, 0] = 0.0  # underflowed softmax outputs
    clipped = np.clip(p, PROBABILITY_FLOOR, 1.0)
    alpha = fit_dirichlet(clipped.mean(0), np.log(clipped).mean(0))
    assert np.all(np.isfinite(alpha)) and np.all(alpha > 0)
    score = ((alpha - 1) * np.log(clipped)).sum(1)
    assert np.all(np.isfinite(score))
