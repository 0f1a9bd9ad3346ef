"""The base class every skgeoad detector stands on.

:class:`BaseDeepDetector` owns what the four detectors share: parameter and
input validation, reading rows as images, scaling, the device, seeding, the
``offset_`` / ``decision_function`` / ``predict`` contract of scikit-learn's
outlier detectors, and pickling across devices. A detector implements two
hooks on tensors that are already validated, scaled and on the device:

* ``_fit_tensor(X, rng, generator)`` trains and returns the training scores
  (or, for a detector whose scoring rule can change after fit, a dict of
  them per rule, with ``_score_rule`` naming the rule in force);
* ``_score_tensor(X)`` returns the normality scores (higher = more normal).
"""

import copy
import math
from abc import abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._torch import fallback_device, resolve_device, seed_generators, use_mixed_precision

#: Smallest side of a square image inferred from ``n_features`` alone; fewer
#: features (4, 9, 16, ...) are read as tabular data.
MIN_INFERRED_SIDE = 8


def infer_image_shape(n_features, image_shape=None):
    """The ``(height, width, channels)`` that rows of ``n_features`` hold, or ``None`` for tabular.

    Parameters
    ----------
    n_features : int
    image_shape : None, "tabular", (H, W) or (H, W, C)
        ``None`` infers: a square number of at least 64 is a grey image, three
        times such a square an RGB image, anything else tabular.

    Examples
    --------
    >>> infer_image_shape(64), infer_image_shape(3072), infer_image_shape(10)
    ((8, 8, 1), (32, 32, 3), None)
    """
    if image_shape == "tabular":
        return None
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape += (1,)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (height, width) or (height, width, channels), got {image_shape!r}.")
        if math.prod(shape) != n_features:
            raise ValueError(
                f"image_shape={image_shape!r} holds {math.prod(shape)} values per image, "
                f"but X has {n_features} features."
            )
        return shape
    for channels in (1, 3):
        side = math.isqrt(n_features // channels)
        if side >= MIN_INFERRED_SIDE and side * side * channels == n_features:
            return (side, side, channels)
    return None


class BaseDeepDetector(OutlierMixin, BaseEstimator):
    """Shared machinery of the deep anomaly detectors (not for direct use)."""

    _parameter_constraints: dict = {
        "image_shape": [None, StrOptions({"tabular"}), tuple, list],
        "epochs": [None, Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "device": [str, torch.device],
        "mixed_precision": [StrOptions({"auto"}), "boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    # -- hooks -------------------------------------------------------------

    @abstractmethod
    def _fit_tensor(self, X, rng, generator, **fit_params):
        """Train on the scaled tensor ``X``; return the training normality scores."""

    @abstractmethod
    def _score_tensor(self, X):
        """Normality scores of the scaled tensor ``X`` as a 1-D NumPy array."""

    # -- public API --------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, **fit_params):
        """Fit the detector on normal data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)
            Training data: flat rows (read as images when ``image_shape`` says
            so or it can be inferred) or channels-last images.
        y : Ignored
            Not used, present for API consistency by convention.
        **fit_params : dict
            Passed to the detector's training (see its own ``fit``).

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X = self._validate_input(X, reset=True)
        self.device_ = resolve_device(self.device)
        self.mixed_precision_ = use_mixed_precision(self.mixed_precision, self.device_)
        self._learn_scaling(X)
        rng, generator = seed_generators(self.random_state)
        training_scores = self._fit_tensor(self._to_tensor(X), rng, generator, **fit_params)
        if isinstance(training_scores, dict):
            self.offsets_ = {rule: self._threshold(scores) for rule, scores in training_scores.items()}
            self.offset_ = self.offsets_[self._score_rule()]
        else:
            self.offset_ = self._threshold(training_scores)
        return self

    def _threshold(self, training_scores):
        """The ``contamination`` quantile of the training scores."""
        return float(np.percentile(training_scores, 100.0 * self.contamination))

    def score_samples(self, X):
        """Normality score of each sample. The lower, the more abnormal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)
            Samples shaped like the training data.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher means more normal. A sample's score does not depend on the
            other samples passed with it.
        """
        return self._score_tensor(self._fitted_tensor(X))

    def decision_function(self, X):
        """Shifted normality score: negative for outliers, positive for inliers.

        ``decision_function(X) = score_samples(X) - offset_``, where ``offset_``
        is the ``contamination`` quantile of the training scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self._offset()

    def _score_rule(self):
        """The scoring rule in force, for detectors that keep ``offsets_`` per rule."""
        return self.score_type

    def _offset(self):
        """The threshold ``decision_function`` subtracts: the offset of the
        rule in force when the detector keeps one per rule."""
        if hasattr(self, "offsets_"):
            return self.offsets_[self._score_rule()]
        return self.offset_

    def predict(self, X):
        """Label each sample as an inlier (+1) or an outlier (-1).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        decision = self.decision_function(X)
        return np.where(decision < 0, -1, 1)

    # -- input handling ----------------------------------------------------

    def _validate_input(self, X, reset):
        """Validate ``X`` and return it as a 2-D float array of flat rows.

        Channels-last image arrays (3-D or 4-D) are checked against the image
        shape and flattened; 2-D rows go through ``validate_data`` as usual.
        With ``reset``, also decides ``image_shape_``.
        """
        min_samples = 2 if reset else 1
        array_shape = None
        if getattr(X, "ndim", 2) > 2:
            X = check_array(
                X, allow_nd=True, dtype=[np.float32, np.float64], ensure_min_samples=min_samples
            )
            if X.ndim > 4:
                raise ValueError(f"Image arrays must be (n, H, W) or (n, H, W, C); got shape {X.shape}.")
            array_shape = X.shape[1:] + (1,) * (4 - X.ndim)
            if not reset and array_shape != getattr(self, "image_shape_", array_shape):
                fitted_on = self.image_shape_ or f"tabular rows of {self.n_features_in_} features"
                raise ValueError(
                    f"X holds images of shape {array_shape}, but the detector was fitted on {fitted_on}."
                )
            X = validate_data(self, X.reshape(len(X), -1), skip_check_array=True, reset=reset)
        else:
            X = validate_data(
                self, X, reset=reset, dtype=[np.float32, np.float64], ensure_min_samples=min_samples
            )
        if reset:
            shape_from_rows = infer_image_shape(X.shape[1], self.image_shape)
            if array_shape is not None and self.image_shape is not None and shape_from_rows != array_shape:
                raise ValueError(
                    f"image_shape={self.image_shape!r} does not match images of shape {array_shape}."
                )
            self.image_shape_ = array_shape or shape_from_rows
        return X

    def _learn_scaling(self, X):
        """Images: map the global min/max of the training pixels to [-1, 1].
        Tabular: standardise each feature (features may have unrelated scales)."""
        if self.image_shape_ is not None:
            low, high = float(X.min()), float(X.max())
            scale = 2.0 / (high - low) if high > low else 1.0
            self.scaling_ = (np.float32(low), np.float32(scale))
        else:
            mean = X.mean(axis=0)
            std = X.std(axis=0)
            std[std == 0] = 1.0
            self.scaling_ = (mean.astype(np.float32), (1.0 / std).astype(np.float32))

    def _fitted_tensor(self, X):
        """Check the detector is fitted, validate ``X`` against the fit, and return its tensor."""
        check_is_fitted(self)
        return self._to_tensor(self._validate_input(X, reset=False))

    def _network_input(self, X):
        """Flat tensors as networks take them: ``(n, C, H, W)`` images or ``(n, d)`` rows."""
        if self.image_shape_ is None:
            return X
        height, width, channels = self.image_shape_
        return X.view(len(X), channels, height, width)

    @property
    def _dtype(self):
        """float32 for images; float64 for tabular data, whose networks are small.

        In float64 a sample's score is the same to ~1e-15 whatever batch it is
        computed in (BLAS picks kernels by batch size), which scikit-learn's
        subset-invariance check demands; in float32 it moves by ~1e-6.
        """
        if self.image_shape_ is None and self.device_.type != "mps":
            return torch.float64
        return torch.float32

    def _to_tensor(self, X):
        """Scaled tensor on the device: ``(n, C, H * W)`` for images, ``(n, d)`` for tabular."""
        # Read-only (memmap) or negatively strided input is copied: torch takes neither.
        tensor = torch.from_numpy(np.require(X, requirements=["C", "W"])).to(self.device_, self._dtype)
        shift, scale = (torch.as_tensor(v, device=self.device_, dtype=self._dtype) for v in self.scaling_)
        tensor = (tensor - shift) * scale
        if self.image_shape_ is None:
            return tensor
        height, width, channels = self.image_shape_
        tensor = tensor.sub_(1.0).view(len(tensor), height * width, channels)
        return tensor.transpose(1, 2).contiguous()

    # -- pickling across devices -------------------------------------------

    def __getstate__(self):
        # A copy: on Python >= 3.11 ``object.__getstate__`` returns ``__dict__`` itself.
        state = dict(super().__getstate__())
        # Everything torch holds goes to the CPU, so the pickle loads anywhere;
        # ``device_`` remembers where the model was fitted.
        for name, value in state.items():
            if isinstance(value, (torch.nn.Module, torch.Tensor)):
                state[name] = _to_cpu(value)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "device_" in state:
            self.device_ = fallback_device(torch.device(self.device_))
            self.mixed_precision_ = use_mixed_precision(self.mixed_precision, self.device_)
            for name, value in list(vars(self).items()):
                if isinstance(value, (torch.nn.Module, torch.Tensor)):
                    setattr(self, name, value.to(self.device_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _to_cpu(value):
    """A CPU copy of a module or tensor, leaving the original where it is."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if all(t.device.type == "cpu" for t in (*value.parameters(), *value.buffers())):
        return value
    return copy.deepcopy(value).to("cpu")


__all__ = ["BaseDeepDetector", "infer_image_shape"]
