"""Dirichlet maximum likelihood and the GEOM normality score.

The estimator needs only two sufficient statistics per transformation: the
mean probability vector ``f`` and the mean log-probability vector of the
observed softmax outputs. The detector accumulates them while it streams the
training images through the network, so the raw softmax outputs never have to
be held in memory.

Everything here is vectorised over a leading batch axis (one Dirichlet per
transformation) and runs in float64.

References
----------
T. Minka, "Estimating a Dirichlet distribution", 2000.
N. Wicker, J. Muller, R. K. R. Kalathur and O. Poch, "A maximum likelihood
approximation method for Dirichlet's parameter estimation", Computational
Statistics & Data Analysis 52(3), 2008.
"""

import numpy as np
from scipy.special import digamma, polygamma

#: Probabilities are clipped to this before taking logs, so that a softmax
#: output that underflowed to exactly 0 gives a large finite penalty, not -inf.
PROBABILITY_FLOOR = 1e-12

_DIGAMMA_ONE = digamma(1.0)  # -Euler's gamma


def inverse_digamma(y, n_newton_steps=5):
    """Solve ``digamma(x) = y`` elementwise (Minka 2000, Appendix C).

    Starts from ``exp(y) + 1/2`` for ``y >= -2.22`` and from
    ``-1 / (y - digamma(1))`` below, then takes Newton steps; five are enough
    for 14 significant digits.
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.where(y >= -2.22, np.exp(y) + 0.5, -1.0 / (y - _DIGAMMA_ONE))
    for _ in range(n_newton_steps):
        x = x - (digamma(x) - y) / polygamma(1, x)
    return x


def wicker_alpha(mean_p, mean_log_p):
    """Wicker et al.'s closed-form starting point for the Dirichlet MLE.

    ``alpha_0 = f * (K - 1) (-digamma(1)) / (sum_j f_j log f_j - sum_j f_j mean_log_p_j)``
    with ``f`` the mean of the observations; both arguments have shape
    ``(..., K)``.
    """
    mean_p = np.asarray(mean_p, dtype=np.float64)
    mean_log_p = np.asarray(mean_log_p, dtype=np.float64)
    n_categories = mean_p.shape[-1]
    denominator = np.sum(mean_p * (np.log(mean_p) - mean_log_p), axis=-1, keepdims=True)
    # By Jensen's inequality the denominator is >= 0, and 0 only when every
    # observation is the same vector; a tiny floor keeps the start finite.
    denominator = np.maximum(denominator, 1e-12)
    return mean_p * (n_categories - 1) * (-_DIGAMMA_ONE) / denominator


def fit_dirichlet(mean_p, mean_log_p, max_iter=1000, tol=1e-9):
    """Maximum-likelihood Dirichlet parameters from sufficient statistics.

    Minka's fixed point ``alpha <- inverse_digamma(digamma(sum(alpha)) + mean_log_p)``
    started at :func:`wicker_alpha`, until the Euclidean norm of a step falls
    below ``tol`` for every distribution in the batch (or ``max_iter``).

    Parameters
    ----------
    mean_p : array-like of shape (..., K)
        Mean of the observed probability vectors.
    mean_log_p : array-like of shape (..., K)
        Mean of their elementwise logarithms.
    max_iter : int, default=1000
    tol : float, default=1e-9

    Returns
    -------
    alpha : ndarray of shape (..., K)
        Concentration parameters, all positive.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.random.default_rng(0).dirichlet([2.0, 5.0, 1.0], size=20000)
    >>> alpha = fit_dirichlet(p.mean(0), np.log(p).mean(0))
    >>> np.round(alpha, 1)
    array([2., 5., 1.])
    """
    mean_log_p = np.asarray(mean_log_p, dtype=np.float64)
    alpha = wicker_alpha(mean_p, mean_log_p)
    for _ in range(max_iter):
        updated = inverse_digamma(digamma(alpha.sum(axis=-1, keepdims=True)) + mean_log_p)
        step = np.sqrt(np.sum((updated - alpha) ** 2, axis=-1))
        alpha = updated
        if np.all(step < tol):
            break
    return alpha
