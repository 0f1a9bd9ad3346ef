"""The detectors the benchmark can run, by short name.

skgeoad's own detectors, scikit-learn's outlier detectors and, when PyOD is
installed, a few of PyOD's, all behind scikit-learn's conventions (higher
``score_samples`` = more normal).
"""

import difflib
import inspect
from importlib import import_module
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..subcluster import SubClusterDetector


class PCAReconstruction(OutlierMixin, BaseEstimator):
    """PCA reconstruction error as an outlier score: a classic linear baseline.

    Parameters
    ----------
    n_components : int or float, default=0.9
        Passed to :class:`sklearn.decomposition.PCA`; a float keeps that
        share of the variance.
    """

    _parameter_constraints: dict = {
        "n_components": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="neither"),
            StrOptions({"mle"}),
            None,
        ],
    }

    def __init__(self, n_components=0.9):
        self.n_components = n_components

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        self._validate_params()
        X = validate_data(self, X)
        self.pca_ = PCA(n_components=self.n_components, svd_solver="full").fit(X)
        return self

    def score_samples(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        reconstruction = self.pca_.inverse_transform(self.pca_.transform(X))
        return -np.sum((X - reconstruction) ** 2, axis=1)


class PyODDetector(OutlierMixin, BaseEstimator):
    """A PyOD detector with scikit-learn's sign: ``score_samples = -decision_function``.

    PyOD scores outliers high; scikit-learn scores inliers high.

    Parameters
    ----------
    model : str
        Class path inside ``pyod.models``, e.g. ``"knn.KNN"``.
    model_params : dict, optional
        Keyword arguments of the PyOD class.
    random_state : int, optional
        Passed on when the PyOD class takes one.
    """

    def __init__(self, model="knn.KNN", model_params=None, random_state=None):
        self.model = model
        self.model_params = model_params
        self.random_state = random_state

    def _model_class(self):
        module, _, name = self.model.rpartition(".")
        try:
            return getattr(import_module(f"pyod.models.{module}"), name)
        except ImportError:
            raise ImportError("PyOD peers need PyOD: pip install pyod (or skgeoad[benchmark]).") from None

    def fit(self, X, y=None):
        cls = self._model_class()
        X = validate_data(self, X)
        params = dict(self.model_params or {})
        accepted = inspect.signature(cls).parameters
        if "random_state" in accepted and self.random_state is not None:
            params.setdefault("random_state", self.random_state)
        if "n_features" in accepted:  # PyOD's DeepSVDD wants the input size up front
            params.setdefault("n_features", X.shape[1])
        self.detector_ = cls(**params).fit(X)
        return self

    def score_samples(self, X):
        check_is_fitted(self)
        return -self.detector_.decision_function(validate_data(self, X, reset=False))


class UnlabelledSubCluster(SubClusterDetector):
    """:class:`~skgeoad.SubClusterDetector` that finds its sub-clusters itself (k-means,
    ``n_clusters``) even where the protocol knows the classes: the benchmark's
    ``"subcluster-kmeans"``, the paper's setting without labels. Its ``fit`` takes no
    ``cluster_labels``, so the runner passes none."""

    def fit(self, X, y=None):
        """Fit on ``X`` with k-means sub-clusters (see :meth:`SubClusterDetector.fit`)."""
        return super().fit(X, y)


def _skgeoad(class_name, **defaults):
    def factory(**params):
        import skgeoad

        return getattr(skgeoad, class_name)(**{**defaults, **params})

    return factory


def _sklearn(module, class_name, **defaults):
    def factory(**params):
        return getattr(import_module(module), class_name)(**{**defaults, **params})

    return factory


def _pyod(model, **defaults):
    def factory(random_state=None, **params):
        return PyODDetector(model, {**defaults, **params}, random_state)

    return factory


#: Short name -> factory taking the detector's keyword parameters.
DETECTORS = {
    "geometric": _skgeoad("GeometricTransformDetector"),
    "adgan": _skgeoad("ADGANDetector"),
    "subcluster": _skgeoad("SubClusterDetector"),
    "subcluster-odin": _skgeoad("SubClusterDetector", score_type="odin"),
    "subcluster-kl": _skgeoad("SubClusterDetector", score_type="kl"),
    "subcluster-knn": _skgeoad("SubClusterDetector", score_type="knn"),
    "subcluster-kmeans": lambda **params: UnlabelledSubCluster(**params),
    "icae": _skgeoad("IterativeClusterAEDetector"),
    "icae-mse": _skgeoad("IterativeClusterAEDetector", score_type="mse"),
    "icae-geometric": _skgeoad("IterativeClusterAEDetector", network="geometric"),
    "iforest": _sklearn("sklearn.ensemble", "IsolationForest"),
    "ocsvm": _sklearn("sklearn.svm", "OneClassSVM", gamma="scale"),
    "lof": _sklearn("sklearn.neighbors", "LocalOutlierFactor", novelty=True),
    "pca": lambda **params: PCAReconstruction(**params),
    "pyod-knn": _pyod("knn.KNN"),
    "pyod-pca": _pyod("pca.PCA"),
    "pyod-ecod": _pyod("ecod.ECOD"),
    "pyod-copod": _pyod("copod.COPOD"),
    "pyod-ae": _pyod("auto_encoder.AutoEncoder", verbose=0),
    "pyod-deepsvdd": _pyod("deep_svdd.DeepSVDD", verbose=0),
}


def _did_you_mean(word, choices):
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_installed(name):
    """Raise ``ImportError`` when detector ``name`` needs a package that is missing.

    Only PyOD peers need one; their runs would otherwise each fail at ``fit``.
    """
    detector = DETECTORS[name]()
    if isinstance(detector, PyODDetector):
        detector._model_class()


def detector_params(name):
    """The names of the parameters detector ``name`` takes, sorted.

    Those of ``get_params`` for scikit-learn style detectors; for a PyOD peer
    those of its PyOD class (PyOD must be installed) and ``random_state``,
    or ``None`` when that class takes any keyword.

    Examples
    --------
    >>> detector_params("pca")
    ['n_components']
    """
    detector = DETECTORS[name]()
    if not isinstance(detector, PyODDetector):
        return sorted(detector.get_params(deep=False))
    parameters = inspect.signature(detector._model_class()).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return sorted({p.name for p in parameters} | {"random_state"})


def make_detector(name, params=None):
    """An unfitted detector from its short name and parameters.

    The parameters are checked now rather than at ``fit``: their names
    against the detector's, their values against its declared constraints
    where it has them (scikit-learn's and skgeoad's estimators), so that a
    typo fails at once and not hours into a benchmark.

    Raises
    ------
    ValueError
        For an unknown name, a parameter the detector does not have, or a
        value its constraints rule out.
    ImportError
        For a PyOD peer given parameters while PyOD is missing.

    Examples
    --------
    >>> make_detector("ocsvm", {"nu": 0.2})
    OneClassSVM(nu=0.2)
    >>> make_detector("ocsvm", {"nus": 0.2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ocsvm has no parameter 'nus' (did you mean 'nu'?); its parameters are cache_size, ...
    """
    if name not in DETECTORS:
        close = _did_you_mean(name, DETECTORS)
        raise ValueError(f"Unknown detector {name!r}{close}; choose from {sorted(DETECTORS)}.")
    params = dict(params or {})
    known = detector_params(name) if params else None
    for param in params:
        if known is not None and param not in known:
            raise ValueError(
                f"{name} has no parameter {param!r}{_did_you_mean(param, known)}; "
                f"its parameters are {', '.join(known)}."
            )
    detector = DETECTORS[name](**params)
    if hasattr(detector, "_parameter_constraints"):
        detector._validate_params()  # what fit would check, hours later
    return detector


def seeded(detector, seed):
    """A clone of ``detector`` with its ``random_state`` set to ``seed`` where it has one."""
    detector = clone(detector)
    if "random_state" in detector.get_params(deep=False):
        detector.set_params(random_state=seed)
    return detector
