"""The base class every skgeoad detector stands on.

:class:`BaseDeepDetector` owns what the four detectors share: parameter and
input validation, reading rows as images, scaling, the device, seeding, the
``offset_`` / ``decision_function`` / ``predict`` contract of scikit-learn's
outlier detectors, and pickling across devices. A detector implements two
hooks on tensors that are already validated, scaled and on the device:

* ``_fit_tensor(X, rng, generator, X_val=None)`` trains on ``X`` (a
  :class:`~skgeoad._data.DeviceData` of scaled samples on the device),
  records the loss on the held-out ``X_val`` in ``history_`` when given, and
  returns the training scores per rule (used for ``offset_`` only when
  nothing is held out; it may return ``None`` when ``X_val`` is given);
* ``_score_tensor(X, rule)`` returns the normality scores by ``rule`` (higher =
  more normal) as a NumPy array.

Detectors whose scoring rule can change after fit list their rules in
``_score_rules``; the base class keeps an offset for each in ``offsets_``.

How the threshold is set
------------------------
With ``validation_fraction > 0`` (the default) a random share of the
training samples is held out of training; ``offset_`` is the
``contamination`` quantile of *their* scores, which the model scores as it
will score new data. Training scores are optimistic (a network has fitted
them, a k-NN rule meets the sample itself), so a threshold taken from them
flags far fewer new normal samples than ``contamination`` says. With
``validation_fraction=0`` every sample trains, and ``offset_`` is the
quantile of the training scores, as in scikit-learn's outlier detectors:
``predict`` then flags exactly ``contamination`` of the training data itself.
"""

import copy
import inspect
import math
from abc import abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._config import get_config
from ._data import DeviceData
from ._torch import (
    deterministic_algorithms,
    fallback_device,
    memory_format,
    place_module,
    resolve_device,
    seed_generators,
    use_mixed_precision,
)
from ._warnings import warn

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


#: Features the k-NN scores keep as their reference with ``knn_max_samples="auto"``.
KNN_REFERENCE_BYTES = 64 * 2**20


class BaseDeepDetector(OutlierMixin, BaseEstimator):
    """Shared machinery of the deep anomaly detectors (not for direct use)."""

    _parameter_constraints: dict = {
        "image_shape": [None, StrOptions({"tabular"}), tuple, list],
        "epochs": [None, Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "device": [str, torch.device],
        "mixed_precision": [StrOptions({"auto"}), "boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    #: Names of the scoring rules that ``score_type`` can switch between after
    #: fit (``None``: a single rule).
    _score_rules = None

    # -- hooks -------------------------------------------------------------

    @abstractmethod
    def _fit_tensor(self, X, rng, generator, X_val=None, **fit_params):
        """Train on the scaled data ``X``; return the scores that set the thresholds (per
        rule): the training scores without held-out samples, else those of ``X_val``, or
        ``None`` to have :meth:`_calibration_scores` compute them."""

    @abstractmethod
    def _score_tensor(self, X, rule=None):
        """Normality scores of the scaled data ``X`` by ``rule`` as a 1-D NumPy array."""

    def _calibration_scores(self, X, rng):
        """Scores per rule of the held-out samples that set the offsets."""
        return {rule: self._score_tensor(X, rule) for rule in self._score_rules or (None,)}

    def _scores_by_rule(self, X):
        """``score_samples(X)`` under every rule of ``_score_rules``, in one pass through
        the network where the detector's calibration does it so (the benchmark's
        ``--all-rules``): ``{rule: scores}``, not yet checked for finiteness (the caller
        decides what a rule's non-finite scores fail)."""
        data = self._fitted_data(X)
        with deterministic_algorithms(get_config()["deterministic"]):
            return self._calibration_scores(data, None)

    def _knn_reference_mask(self, n_samples, n_features, rng):
        """Boolean mask (on the device) of the training samples the k-NN score keeps as
        its reference: all of them, or a random subset of ``knn_max_samples`` of them
        (``"auto"``: as many as fit ``KNN_REFERENCE_BYTES`` at ``n_features`` values of
        the detector's dtype each)."""
        if self.knn_max_samples == "auto":
            bytes_per_sample = n_features * torch.finfo(self._dtype).bits // 8
            n_kept = max(1, KNN_REFERENCE_BYTES // bytes_per_sample)
        else:
            n_kept = self.knn_max_samples
        mask = torch.zeros(n_samples, dtype=torch.bool)
        mask[rng.choice(n_samples, n_kept, replace=False) if n_kept < n_samples else slice(None)] = True
        return mask.to(self.device_)

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
            Passed to the detector's training (see its own ``fit``); arrays
            with one entry per sample are split with ``X``.

        Returns
        -------
        self : object
            Fitted estimator.

        Notes
        -----
        A fit that raises, or is interrupted (``KeyboardInterrupt``), leaves
        the detector as it was: a fitted detector keeps its earlier model,
        whole, rather than a mix of the old model and the new data's
        attributes. The earlier model is therefore held until the new fit
        ends: refitting a fitted detector needs memory (on its device) for
        both; ``sklearn.base.clone`` it to fit afresh without that.
        """
        earlier = dict(vars(self))
        try:
            return self._fit(X, **fit_params)
        except BaseException:
            # Attributes are set as the fit goes (n_features_in_ first, the
            # network last): a failure half-way would pair the earlier network
            # with the new data's shape, and score nonsense or fail obscurely.
            vars(self).clear()
            vars(self).update(earlier)
            raise

    def _fit(self, X, **fit_params):
        X = self._validate_input(X, reset=True)
        self.device_ = resolve_device(self.device)
        self.mixed_precision_ = use_mixed_precision(self.mixed_precision, self.device_)
        self._check_representable(X)
        rng, generator = seed_generators(self.random_state)
        fit_rows, held_out = self._hold_out(len(X), rng, self._split_labels(**fit_params))
        self.validation_indices_ = held_out
        # Learned from the samples trained on only, so that the held-out ones
        # are scaled as new data is.
        self._learn_scaling(X if held_out is None else X[fit_rows])
        X_val = None
        if held_out is not None:
            per_sample = {key: np.asarray(v) for key, v in fit_params.items() if _per_sample(v, len(X))}
            fit_params.update({key: value[fit_rows] for key, value in per_sample.items()})
            fit_params.update({f"{key}_val": value[held_out] for key, value in per_sample.items()})
            X, X_val = X[fit_rows], self._to_data(X[held_out])
        X = self._to_data(X)
        with deterministic_algorithms(get_config()["deterministic"]):
            scores = self._fit_tensor(X, rng, generator, X_val=X_val, **fit_params)
            if scores is None:
                scores = self._calibration_scores(X_val, rng)
        if not isinstance(scores, dict):
            scores = {None: scores}
        # On training scores, the plain percentile flags exactly `contamination`
        # of the training data. Held-out samples are few (9 of 90 digits): the
        # plain percentile of n scores would flag (1 + (n - 1) c) / (n + 1)
        # of new data on average, 18% for c = 10% and n = 9; the score at rank
        # c (n + 1) ("weibull") flags c on average, as long as that rank is at
        # least 1 (below, the lowest score is used: see _hold_out's warning).
        method = "linear" if X_val is None else "weibull"
        offsets = {rule: self._threshold(values, rule, method) for rule, values in scores.items()}
        if self._score_rules:
            self.offsets_ = offsets
        self.offset_ = offsets[self._score_rule()]
        return self

    def _split_labels(self, **fit_params):
        """Labels the held-out share is stratified by (``None``: a plain random share)."""
        return None

    def _hold_out(self, n_samples, rng, labels=None):
        """``(fit_rows, held_out)`` sorted index arrays, or ``(None, None)`` without a split.

        With ``labels``, every label gets its share of the held-out samples
        (a small sub-cluster is not left out of training by chance).
        """
        if self.validation_fraction == 0:
            return None, None
        n_held_out = max(1, round(self.validation_fraction * n_samples))
        if n_samples - n_held_out < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {n_samples} samples leaves fewer than 2 "
                "to train on; pass more samples or validation_fraction=0."
            )
        if self.contamination * (n_held_out + 1) < 1:
            warn(
                f"Only {n_held_out} samples are held out to set the threshold: it is their lowest score, "
                f"and flags about {1 / (n_held_out + 1):.0%} of new normal data rather than "
                f"contamination={self.contamination}. Raise validation_fraction, pass more samples, "
                "or set validation_fraction=0 (threshold from the training scores).",
            )
        order = rng.permutation(n_samples)
        if labels is None or len(np.unique(labels)) < 2:
            return np.sort(order[n_held_out:]), np.sort(order[:n_held_out])
        # Grouped by label, shuffled within; every (n / n_held_out)-th sample of that
        # order is held out, so each label contributes in proportion to its size.
        order = order[np.argsort(np.asarray(labels)[order], kind="stable")]
        picks = (np.arange(n_held_out) * n_samples) // n_held_out + rng.integers(n_samples // n_held_out)
        held_out = np.zeros(n_samples, dtype=bool)
        held_out[order[picks]] = True
        return np.flatnonzero(~held_out), np.flatnonzero(held_out)

    def _on_all_samples(self, values, fill):
        """Per-sample ``values`` of the samples trained on (last axis), spread over all the
        samples passed to ``fit``, with ``fill`` at the held-out ones."""
        held_out = self.validation_indices_
        if held_out is None:
            return values
        values = np.asarray(values)
        trained = np.ones(values.shape[-1] + len(held_out), dtype=bool)
        trained[held_out] = False
        full = np.full(values.shape[:-1] + trained.shape, fill, dtype=values.dtype)
        full[..., trained] = values
        return full

    def _threshold(self, scores, rule=None, method="linear"):
        """The ``contamination`` quantile of the calibration ``scores``."""
        self._check_finite_scores(scores, "the samples that set offset_", rule)
        return float(np.percentile(scores, 100.0 * self.contamination, method=method))

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

        Raises
        ------
        ValueError
            When a score cannot be computed (it would not be finite), naming
            the samples.
        """
        return self._scores(self._fitted_data(X))

    def _scores(self, data):
        """``score_samples`` of fitted, validated ``data`` under the rule in force."""
        rule = self._score_rule()
        with deterministic_algorithms(get_config()["deterministic"]):
            scores = self._score_tensor(data, rule)
        self._check_finite_scores(scores, "X", rule)
        return scores

    def decision_function(self, X):
        """Shifted normality score: negative for outliers, positive for inliers.

        ``decision_function(X) = score_samples(X) - offset_``, where ``offset_``
        is the ``contamination`` quantile of the scores of the held-out
        training samples (of all training samples with
        ``validation_fraction=0``), for the ``score_type`` in force.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, H, W, C)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        data = self._fitted_data(X)
        offset = self._offset()  # before the scoring's work: a rule an older fit lacks fails at once
        return self._scores(data) - offset

    def _score_rule(self):
        """The scoring rule in force (``None`` for a detector with one rule)."""
        return self.score_type if self._score_rules else None

    def _offset(self):
        """The threshold ``decision_function`` subtracts: the offset of the
        rule in force when the detector keeps one per rule."""
        if self._score_rules:
            rule = self._score_rule()
            if rule not in self.offsets_:
                raise ValueError(
                    f"score_type={rule!r} has no offset in this detector, fitted by an earlier version "
                    f"of skgeoad before the rule existed (its rules: {sorted(self.offsets_)}): refit it."
                )
            return self.offsets_[rule]
        return self.offset_

    def _fitted_by_this_version(self, name, rule, what):
        """Fitted attribute ``name`` (``what`` it holds) that ``rule`` needs; detectors
        fitted before the rule existed lack it, and are told to refit."""
        value = getattr(self, name, None)
        if value is None:
            raise ValueError(
                f"score_type={rule!r} needs the {what} that detectors fitted by this "
                "version of skgeoad keep; this one was fitted by an earlier version: refit it."
            )
        return value

    def _check_finite_scores(self, scores, what, rule):
        """No silent NaN: scores that are not finite end in an error naming the samples."""
        bad = np.flatnonzero(~np.isfinite(scores))
        if len(bad):
            rule_name = f" (score_type={rule!r})" if rule else ""
            raise ValueError(
                f"{len(bad)} of {len(scores)} scores of {what}{rule_name} are not finite (first at index "
                f"{bad[0]}): their values lie too far outside the training data for the network's "
                f"{str(self._dtype).removeprefix('torch.')} arithmetic."
            )

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

    def _check_representable(self, X):
        """Refuse values that the float32 arithmetic (scaling, images) would turn into inf."""
        largest = max(float(X.max()), -float(X.min())) if X.size else 0.0
        limit = float(np.finfo(np.float32).max)
        if largest > limit:
            raise ValueError(
                f"X holds values up to {largest:.3g}, beyond the float32 range (+-{limit:.3g}) in which "
                "skgeoad scales its inputs; rescale X (e.g. divide it by a constant) first."
            )

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
        shift, scale = self.scaling_
        if not (np.all(np.isfinite(shift)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(
                "The spread of X's values cannot be represented in float32 (their range overflows it); "
                "rescale X first."
            )

    def _fitted_data(self, X):
        """Check the detector is fitted and its parameters still valid (they may have been
        set after fit), validate ``X`` against the fit, and return it as device data."""
        check_is_fitted(self)
        self._validate_params()
        X = self._validate_input(X, reset=False)
        self._check_representable(X)
        return self._to_data(X)

    def _network_input(self, X):
        """Flat tensors as networks take them: ``(n, C, H, W)`` images (a view, in the
        memory layout of ``X``) or ``(n, d)`` rows."""
        if self.image_shape_ is None:
            return X
        height, width, _ = self.image_shape_
        return X.unflatten(2, (height, width))

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

    def _to_data(self, X):
        """Validated rows as :class:`~skgeoad._data.DeviceData` of scaled samples on the device:
        ``(n, C, H * W)`` for images, ``(n, d)`` for tabular rows. They stay on the device
        when they fit the ``device_data_bytes`` setting and stream there in batches if not.

        Images keep the rows' own channels-last memory (a transposed view), which is
        the layout the networks compute in (:func:`~skgeoad._torch.memory_format`):
        batches drawn from them reach the networks without a conversion. With the
        ``channels_last`` setting off they are made contiguous (NCHW) instead.
        """
        shift, scale = (torch.as_tensor(v, device=self.device_, dtype=self._dtype) for v in self.scaling_)
        channels_last = memory_format() == torch.channels_last

        def scale_rows(tensor):
            tensor = (tensor - shift) * scale
            if self.image_shape_ is None:
                return tensor
            height, width, channels = self.image_shape_
            tensor = tensor.sub_(1.0).view(len(tensor), height * width, channels).transpose(1, 2)
            # With one channel both layouts count as contiguous; only the strides tell
            # convolutions which kernels to pick, so NCHW needs its own strides.
            return tensor if channels_last else tensor.clone(memory_format=torch.contiguous_format)

        return DeviceData(X, scale_rows, self.device_, self._dtype)

    # -- pickling across devices -------------------------------------------

    def __getstate__(self):
        # A copy: on Python >= 3.11 ``object.__getstate__`` returns ``__dict__`` itself.
        state = dict(super().__getstate__())
        # Everything torch holds, wherever it sits (bare, or in tuples, lists
        # and dicts), goes to the CPU, so the pickle loads anywhere;
        # ``device_`` remembers where the model was fitted.
        return {name: map_torch(value, _to_cpu) for name, value in state.items()}

    def __setstate__(self, state):
        super().__setstate__(state)
        # A detector pickled by an earlier version lacks the parameters added since:
        # they take their defaults, as skgeoad.load gives them (get_params needs them all).
        signature = inspect.signature(type(self).__init__)
        for name in self._get_param_names():
            if name not in state:
                setattr(self, name, signature.parameters[name].default)
        if "device_" in state:
            self._place_on(fallback_device(torch.device(self.device_)))
        self._complete_older_fit()

    def _complete_older_fit(self):
        """Fill in the fitted attributes an earlier version did not keep, from those it did
        (after unpickling and after :func:`skgeoad.load`); nothing by default."""

    def _place_on(self, device):
        """Make ``device`` the fitted model's device: every tensor and module moves to it,
        and bf16 autocast is decided anew for it (a loaded model's device may differ from
        the one it was fitted on)."""
        self.device_ = device
        self.mixed_precision_ = use_mixed_precision(self.mixed_precision, device)
        for name, value in list(vars(self).items()):
            setattr(self, name, map_torch(value, lambda torch_object: _place(torch_object, device)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def map_torch(value, function):
    """``value`` with ``function`` applied to every module and tensor in it, however deeply
    they sit in tuples, lists and dicts (rebuilt as new containers; the rest kept as is)."""
    if isinstance(value, (torch.nn.Module, torch.Tensor)):
        return function(value)
    if isinstance(value, dict):
        return {key: map_torch(item, function) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(map_torch(item, function) for item in value)
    return value


def _per_sample(value, n_samples):
    """Whether a fit parameter has one entry per sample (and is split with ``X``)."""
    return hasattr(value, "__len__") and not isinstance(value, (str, dict)) and len(value) == n_samples


def _place(value, device):
    """A module or tensor on ``device``; networks in the layout they compute in."""
    if isinstance(value, torch.nn.Module):
        return place_module(value, device)
    return value.to(device)


def _to_cpu(value):
    """A CPU copy of a module or tensor, leaving the original where it is."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if all(t.device.type == "cpu" for t in (*value.parameters(), *value.buffers())):
        return value
    return copy.deepcopy(value).to("cpu")


__all__ = ["BaseDeepDetector", "infer_image_shape"]
