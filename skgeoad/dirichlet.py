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
from scipy.special import digamma, gammaln, polygamma

#: Probabilities are clipped to this before taking logs, so that a softmax
#: output that underflowed to exactly 0 gives a large finite penalty, not -inf.
PROBABILITY_FLOOR = 1e-12

_DIGAMMA_ONE = digamma(1.0)  # -Euler's gamma


def inverse_digamma(y, n_newton_steps=5):
    """Solve ``digamma(x) = y`` elementwise (Minka 2000, Appendix C).

    Starts from ``exp(y) + 1/2`` for ``y >= -2.22`` and from
    ``-1 / (y - digamma(1))`` below, then takes Newton steps; five are enough
    for 14 significant digits.

    Examples
    --------
    >>> float(inverse_digamma(digamma(2.5)).round(10))
    2.5
    """
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):  # np.where evaluates both branches
        x = np.where(y >= -2.22, np.exp(y) + 0.5, -1.0 / (y - _DIGAMMA_ONE))
    for _ in range(n_newton_steps):
        x = x - (digamma(x) - y) / polygamma(1, x)
    return x


def wicker_alpha(mean_p, mean_log_p):
    """Wicker et al.'s closed-form starting point for the Dirichlet MLE.

    ``alpha_0 = f * (K - 1) (-digamma(1)) / (sum_j f_j log f_j - sum_j f_j mean_log_p_j)``
    with ``f`` the mean of the observations; both arguments have shape
    ``(..., K)``.

    Examples
    --------
    >>> p = np.random.default_rng(0).dirichlet([3.0, 1.0], size=10000)
    >>> np.round(wicker_alpha(p.mean(0), np.log(p).mean(0)))
    array([3., 1.])
    """
    mean_p = np.asarray(mean_p, dtype=np.float64)
    mean_log_p = np.asarray(mean_log_p, dtype=np.float64)
    n_categories = mean_p.shape[-1]
    denominator = np.sum(mean_p * (np.log(mean_p) - mean_log_p), axis=-1, keepdims=True)
    # By Jensen's inequality the denominator is >= 0, and 0 only when every
    # observation is the same vector; a tiny floor keeps the start finite.
    denominator = np.maximum(denominator, 1e-12)
    return mean_p * (n_categories - 1) * (-_DIGAMMA_ONE) / denominator


def dirichlet_log_likelihood(alpha, mean_log_p):
    """Mean log-likelihood per observation of Dirichlet(``alpha``), from ``mean_log_p``."""
    return (
        gammaln(alpha.sum(axis=-1))
        - gammaln(alpha).sum(axis=-1)
        + ((alpha - 1.0) * mean_log_p).sum(axis=-1)
    )


def _fixed_point_step(alpha, mean_log_p):
    """Minka's fixed point ``inverse_digamma(digamma(sum(alpha)) + mean_log_p)``."""
    return inverse_digamma(digamma(alpha.sum(axis=-1, keepdims=True)) + mean_log_p)


def _newton_step(alpha, mean_log_p):
    """Newton's step on the (concave) log-likelihood, kept feasible and ascending.

    The Hessian is a diagonal plus a constant (``-trigamma(alpha_k)`` and
    ``trigamma(sum(alpha))``), so the step costs O(K) (Minka 2000, eq. 14-18).
    The step is halved while it would leave the positive orthant or lower the
    likelihood.
    """
    gradient = digamma(alpha.sum(axis=-1, keepdims=True)) - digamma(alpha) + mean_log_p
    q = -polygamma(1, alpha)
    z = polygamma(1, alpha.sum(axis=-1, keepdims=True))
    b = (gradient / q).sum(axis=-1, keepdims=True) / (1.0 / z + (1.0 / q).sum(axis=-1, keepdims=True))
    step = (gradient - b) / q
    current = dirichlet_log_likelihood(alpha, mean_log_p)
    scale = np.ones(alpha.shape[:-1] + (1,))
    for _ in range(60):
        candidate = alpha - scale * step
        feasible = np.all(candidate > 0, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            ascends = dirichlet_log_likelihood(np.where(feasible, candidate, alpha), mean_log_p)[..., None]
        ok = feasible & (ascends >= current[..., None] - 1e-12 * np.abs(current[..., None]))
        if np.all(ok):
            return candidate
        scale = np.where(ok, scale, scale / 2)
    return np.where(ok, candidate, alpha)


def fit_dirichlet(mean_p, mean_log_p, method="newton", max_iter=1000, tol=1e-9):
    """Maximum-likelihood Dirichlet parameters from sufficient statistics.

    Starts at :func:`wicker_alpha` and iterates until the Euclidean norm of a
    step falls below ``tol`` for every distribution in the batch (or
    ``max_iter``).

    ``method="fixed_point"`` is Minka's fixed point
    ``alpha <- inverse_digamma(digamma(sum(alpha)) + mean_log_p)``, the
    iteration named in the GEOM paper and used by its code. It converges
    linearly, and slowly for the very concentrated distributions a trained
    classifier produces (sums of ``alpha`` in the thousands): there it stops
    at ``max_iter`` short of the maximum. ``method="newton"`` (default) is
    Minka's Newton iteration on the same likelihood; it reaches the same
    maximum to ``tol`` in a handful of steps, so the detector uses it.

    Parameters
    ----------
    mean_p : array-like of shape (..., K)
        Mean of the observed probability vectors.
    mean_log_p : array-like of shape (..., K)
        Mean of their elementwise logarithms.
    method : {"newton", "fixed_point"}, default="newton"
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
    >>> np.round(alpha)
    array([2., 5., 1.])
    """
    steps = {"newton": _newton_step, "fixed_point": _fixed_point_step}
    if method not in steps:
        raise ValueError(f"method must be 'newton' or 'fixed_point', got {method!r}.")
    step_fn = steps[method]
    mean_log_p = np.asarray(mean_log_p, dtype=np.float64)
    alpha = wicker_alpha(mean_p, mean_log_p)
    flat_alpha = alpha.reshape(-1, alpha.shape[-1])
    flat_log_p = np.broadcast_to(mean_log_p, alpha.shape).reshape(flat_alpha.shape)
    # Only distributions that have not converged yet are iterated.
    active = np.arange(len(flat_alpha))
    for _ in range(max_iter):
        updated = step_fn(flat_alpha[active], flat_log_p[active])
        moved = np.sqrt(np.sum((updated - flat_alpha[active]) ** 2, axis=-1))
        flat_alpha[active] = updated
        active = active[moved >= tol]
        if not len(active):
            break
    return flat_alpha.reshape(alpha.shape)
