"""ONNX export of a fitted detector's whole score.

:func:`export_onnx` writes an ONNX model that maps raw rows, the input
``score_samples`` takes, to the detector's scores: scaling, reshaping to
images, transformations, network and score rule in one graph, with a dynamic
batch axis. A server then needs onnxruntime (or any ONNX runtime), not Python
research code. :func:`scoring_module` returns the same computation as a torch
module.

What exports, and what does not
-------------------------------
* :class:`~skgeoad.GeometricTransformDetector`: every transformation set (and
  the affine maps of tabular data), every ``score_type`` (the k-NN rules'
  training features travel in the file).
* :class:`~skgeoad.IterativeClusterAEDetector`: both autoencoders
  (``score_type="cosine"`` and ``"mse"``) and the transformation classifier
  (``"knn"``; the selected subset's features travel in the file).
* :class:`~skgeoad.SubClusterDetector`: ``"msp"``, ``"kl"``, ``"knn"`` (the
  training features travel in the file as the neighbours), the single-cluster
  fallback, and ``"odin"``: ODIN moves each input against the gradient of the
  network's loss with respect to that input, and ``torch.export`` cannot
  trace ``torch.autograd.grad``, so the score is first traced with ``make_fx``
  into the operators of the backward pass (the input gradient of a
  convolution is a transposed convolution), which the exporter translates.
* :class:`~skgeoad.ADGANDetector` with ``search="latent"``, every
  ``score_type``: the reconstruction score is an optimisation,
  ``n_search_steps`` Adam steps on each of the ``n_seeds`` latent vectors
  per sample with the generator fixed; the graph unrolls them (the same
  tracing of the gradients as ODIN, Adam's update as torch computes it), one
  row per (sample, seed) search, and adds the critic for ``"critic"`` and
  the two combined rules.
* Not :class:`~skgeoad.ADGANDetector` with ``search="joint"`` (the default)
  and a rule that searches (every rule but ``"critic"``): each
  (sample, seed) search also moves its own copy of the generator's weights
  (vmapped weight gradients, a fused Adam over the copies), which the
  exporter cannot translate. Fit with ``search="latent"`` to export, or
  export ``score_type="critic"``, which needs no search.

The exporter
------------
torch's ``torch.export``-based exporter (``dynamo=True``, the default since
torch 2.9; the TorchScript one is deprecated), which needs ``onnxscript``.
Opset 18 is pinned: it is the opset the exporter's operator library is
written for (no version conversion step), and onnxruntime has run it since
1.14.
"""

import contextlib
import copy
import logging
import math
import os
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._scoring import (
    ADGAN_COMBINED_RULES,
    AutoencoderScore,
    DeployedScore,
    GeometricScore,
    LatentSearchScore,
    OdinScore,
    RowScaling,
    SubClusterScore,
)
from .adgan import _SEARCH_BETAS, ADGANDetector
from .dirichlet import PROBABILITY_FLOOR
from .geometric import GeometricTransformDetector
from .iterative_ae import IterativeClusterAEDetector
from .subcluster import SubClusterDetector

#: The opset the exported graphs use (see the module docstring).
OPSET_VERSION = 18

#: Names of the graph's input and outputs.
INPUT_NAME = "X"
OUTPUT_NAMES = ("score_samples", "decision_function", "predict")

#: Samples in the example batch the graph is traced with (the batch axis stays dynamic).
_TRACE_BATCH = 3


def scoring_module(detector):
    """The detector's whole score as a torch module, on the CPU in full precision.

    Raw rows ``(n, n_features)`` (float32) in, ``score_samples`` out, by the
    detector's current ``score_type``; the module holds copies of what the
    detector learned, so the detector itself is left as it is.

    Parameters
    ----------
    detector : GeometricTransformDetector, IterativeClusterAEDetector, SubClusterDetector or ADGANDetector
        A fitted detector (see :mod:`skgeoad.export` for what can be exported).

    Returns
    -------
    module : torch.nn.Module
        In eval mode, on the CPU, its weights frozen. Float32 arithmetic for images and float64
        for tabular rows, whatever ``mixed_precision`` the detector uses.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When the detector is not fitted.
    ValueError
        For ``ADGANDetector(search="joint")`` with a rule that searches, saying why.
    TypeError
        For anything that is not a skgeoad detector.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skgeoad import SubClusterDetector
    >>> from skgeoad.export import scoring_module
    >>> X, y = load_digits(return_X_y=True)
    >>> detector = SubClusterDetector(epochs=2, device="cpu", mixed_precision=False, random_state=0)
    >>> detector = detector.fit(X[y < 3], cluster_labels=y[y < 3])   # float32, as the module computes
    >>> module = scoring_module(detector)
    >>> scores = module(torch.as_tensor(X[:5], dtype=torch.float32)).double().numpy()
    >>> bool(abs(scores - detector.score_samples(X[:5].astype("float32"))).max() < 1e-6)
    True
    """
    builders = {
        GeometricTransformDetector: _geometric,
        IterativeClusterAEDetector: _autoencoder,
        SubClusterDetector: _subcluster,
        ADGANDetector: _adgan,
    }
    builder = next((build for cls, build in builders.items() if isinstance(detector, cls)), None)
    if builder is None:
        raise TypeError(
            f"Only skgeoad's detectors can be exported, got {type(detector).__name__}; for scikit-learn "
            "estimators see the skl2onnx project."
        )
    check_is_fitted(detector)
    # A score_type set after fit is checked here, as score_samples checks it.
    detector._validate_params()
    # Inference only: no gradients are tracked through the copied weights.
    return builder(detector).eval().requires_grad_(False)


def export_onnx(detector, path, *, opset_version=OPSET_VERSION):
    """Write the fitted detector's whole score as an ONNX model.

    The model maps raw rows, ``X`` of shape ``(n, n_features)`` and type
    float32 (images flattened channels last, as ``score_samples`` takes
    them), to three outputs, each of shape ``(n,)``:

    * ``score_samples`` (float64): the detector's ``score_samples(X)`` by its
      current ``score_type``, the lower the more abnormal;
    * ``decision_function`` (float64): ``score_samples - offset``, negative
      for outliers;
    * ``predict`` (int64): -1 for outliers, +1 for inliers.

    The batch axis is dynamic. Scaling, reshaping to images,
    transformations, network and score rule are all in the graph. The offset
    is that of the current ``score_type`` (``offsets_[score_type]``); switch
    ``score_type`` with ``set_params`` before exporting to export another
    rule. The model's ``metadata_props`` record the detector, the rule, the
    offset, ``contamination``, the image shape and the skgeoad and torch
    versions.

    The graph computes in float32 for images (float64 for tabular rows, cast
    from the float32 input), on the CPU, whatever device and
    ``mixed_precision`` the detector was fitted with; the detector is not
    changed (its networks are copied). It does no input validation: rows
    with NaN or values far outside the training range give non-finite
    scores where ``score_samples`` raises.

    Parameters
    ----------
    detector : GeometricTransformDetector, IterativeClusterAEDetector, SubClusterDetector or ADGANDetector
        A fitted detector, any score rule; :class:`~skgeoad.ADGANDetector`
        with ``search="latent"``, or with ``score_type="critic"`` (see
        :mod:`skgeoad.export`).
    path : str or os.PathLike
        Where to write the ``.onnx`` file (one file, weights included).
    opset_version : int, default=18
        ONNX opset; 18 is what torch's exporter writes natively.

    Returns
    -------
    model : onnx.ModelProto
        The model written to ``path``.

    Raises
    ------
    ImportError
        When ``onnx`` or ``onnxscript`` is missing: ``pip install
        "skgeoad[export]"``.
    sklearn.exceptions.NotFittedError
        When the detector is not fitted.
    ValueError
        For ``ADGANDetector(search="joint")`` with a rule that searches, saying why.

    Examples
    --------
    >>> import numpy as np, onnxruntime, tempfile, os
    >>> from sklearn.datasets import load_digits
    >>> from skgeoad import GeometricTransformDetector, export_onnx
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X.astype(np.float32)
    >>> detector = GeometricTransformDetector(      # float32, as the graph computes
    ...     transformations="rotations", widen_factor=1, epochs=2, device="cpu",
    ...     mixed_precision=False, random_state=0,
    ... ).fit(X[y == 0][:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "geom.onnx")
    >>> _ = export_onnx(detector, path)
    >>> session = onnxruntime.InferenceSession(path)
    >>> scores, decision, labels = session.run(None, {"X": X[:8]})
    >>> bool(np.allclose(scores, detector.score_samples(X[:8]), rtol=1e-5))
    True
    >>> bool((labels == detector.predict(X[:8])).all())
    True
    """
    onnx = _require_export_packages()
    score = scoring_module(detector)  # refuses unfitted detectors and other estimators first
    offset = detector._offset()
    deployed = DeployedScore(score, offset).eval()
    example = torch.zeros(_TRACE_BATCH, detector.n_features_in_, dtype=torch.float32)
    with _quiet_exporter(), torch.no_grad():
        if isinstance(score, (OdinScore, LatentSearchScore)):
            deployed = _backward_traced(deployed, example)
        program = torch.onnx.export(
            deployed,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"X": {0: torch.export.Dim("batch")}},
            opset_version=opset_version,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model = program.model_proto
    model.doc_string = (
        f"skgeoad {type(detector).__name__}, score_type={_rule_name(detector)!r}: raw rows "
        f"(n, {detector.n_features_in_}) float32 -> score_samples, decision_function = score_samples "
        f"- {offset!r}, predict = -1 where decision_function < 0 else +1."
    )
    onnx.helper.set_model_props(model, _metadata(detector, offset))
    onnx.save_model(model, os.fspath(path))
    return model


def _rule_name(detector):
    return detector._score_rule() or "default"


def _metadata(detector, offset):
    from . import __version__

    return {
        "skgeoad.version": __version__,
        "skgeoad.torch_version": torch.__version__,
        "skgeoad.detector": type(detector).__name__,
        "skgeoad.score_type": _rule_name(detector),
        "skgeoad.offset": repr(float(offset)),
        "skgeoad.contamination": repr(float(detector.contamination)),
        "skgeoad.decision_rule": "decision_function = score_samples - offset; predict = -1 where "
        "decision_function < 0, else +1 (higher scores are more normal)",
        "skgeoad.n_features_in": str(detector.n_features_in_),
        "skgeoad.image_shape": "tabular" if detector.image_shape_ is None else "x".join(
            str(s) for s in detector.image_shape_
        ),
        "skgeoad.input": "float32 rows, images flattened channels last (H, W, C)",
    }


def _require_export_packages():
    """``onnx`` (and ``onnxscript``, which torch's exporter needs), or a clear ImportError."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            "installed: pip install \"skgeoad[export]\" (onnx, onnxscript and onnxruntime)."
        )
    import onnx

    return onnx


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's chatter (missing torchvision ops, tracing notes), not its errors."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


# -- input gradients as plain operators ----------------------------------------


def _input_gradient_of_convolution(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                                   transposed, output_padding, groups, output_mask):  # fmt: skip
    """``aten.convolution_backward`` for the input only (the weights are frozen): the input
    gradient of a convolution is a transposed convolution with the same weights, and that of
    a transposed convolution a convolution. The exporter has no translation of the backward op."""
    if any(output_mask[1:]) or len(weight.shape) != 4:
        raise NotImplementedError("only the input gradient of a 2-D convolution is traced")
    if transposed:
        grad_input = torch.nn.functional.conv2d(grad_output, weight, None, stride, padding, dilation, groups)
        return grad_input, None, None
    sizes = [
        (grad_output.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[i + 2] - 1) + 1
        for i in range(2)
    ]
    # A strided convolution drops trailing rows and columns; the transposed one adds them back.
    output_padding = [input.shape[i + 2] - sizes[i] for i in range(2)]
    grad_input = torch.nn.functional.conv_transpose2d(
        grad_output, weight, None, stride, padding, output_padding, groups, dilation
    )
    return grad_input, None, None


def _backward_decompositions():
    from torch._decomp import decomposition_table

    aten = torch.ops.aten
    return {
        aten.convolution_backward.default: _input_gradient_of_convolution,
        aten.max_pool2d_with_indices_backward.default: decomposition_table[
            aten.max_pool2d_with_indices_backward.default
        ],
    }


class _TracedGraph(torch.nn.Module):
    """A traced function of ``(X, *tensors)`` with the tensors held as buffers."""

    def __init__(self, graph, tensors):
        super().__init__()
        self.graph_module = graph
        self.n_tensors = len(tensors)
        for i, tensor in enumerate(tensors):
            self.register_buffer(f"tensor_{i}", tensor.detach().clone())

    def forward(self, X):
        return self.graph_module(X, *(getattr(self, f"tensor_{i}") for i in range(self.n_tensors)))


def _backward_traced(module, example):
    """``module`` with the autograd calls in its ``forward`` traced into the operators of the
    backward pass (``make_fx``, batch axis symbolic), which the exporter can translate:
    ``torch.export`` cannot trace ``torch.autograd.grad`` itself."""
    from torch.func import functional_call
    from torch.fx.experimental.proxy_tensor import make_fx

    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    names = list(state)

    def run(X, *tensors):
        return functional_call(module, dict(zip(names, tensors)), (X,))

    with torch.enable_grad():
        graph = make_fx(run, tracing_mode="symbolic", decomposition_table=_backward_decompositions())(
            example, *state.values()
        )
    return _TracedGraph(graph, list(state.values())).eval()


# -- per detector ------------------------------------------------------------


def _cpu_copy(module):
    """A CPU copy of ``module`` in eval mode; the fitted one stays where it is, as it is."""
    return copy.deepcopy(module).to("cpu").eval()


def _cpu_tensor(tensor):
    return torch.as_tensor(tensor).detach().to("cpu").clone()


def _scaling(detector):
    shift, scale = detector.scaling_
    return RowScaling(shift, scale, detector.image_shape_, _compute_dtype(detector))


def _compute_dtype(detector):
    """The dtype the detector computes in on the CPU (float64 for tabular rows)."""
    return torch.float32 if detector.image_shape_ is not None else torch.float64


def _chw(detector):
    """``(C, H, W)`` of the detector's images, ``None`` for tabular rows."""
    if detector.image_shape_ is None:
        return None
    height, width, channels = detector.image_shape_
    return (channels, height, width)


def _geometric(detector):
    dtype = _compute_dtype(detector)
    network = _cpu_copy(detector.network_).to(dtype)
    transformations = _cpu_copy(detector.transformations_)
    if detector.image_shape_ is None:
        transformations = transformations.to(dtype)
    rule = detector._score_rule()
    reference = _cpu_tensor(detector._knn_reference()).to(dtype) if rule in ("knn", "combined") else None
    moments = _cpu_tensor(detector._moments) if rule == "combined" else None
    return GeometricScore(
        _scaling(detector),
        transformations,
        network,
        rule,
        torch.as_tensor(np.asarray(detector.alpha_, dtype=np.float64) - 1.0),
        math.log(PROBABILITY_FLOOR),
        reference,
        detector.n_neighbors,
        moments,
    )


def _autoencoder(detector):
    dtype = _compute_dtype(detector)
    detector._check_rule(detector._score_rule())  # a rule of the fitted model, as score_samples checks
    if detector._geometric:
        return GeometricScore(
            _scaling(detector),
            _cpu_copy(detector.transformations_),
            _cpu_copy(detector.network_).to(dtype),
            "knn",
            None,  # no Dirichlet weights: the k-NN rule reads the classifier's features only
            math.log(PROBABILITY_FLOOR),
            _cpu_tensor(detector.train_features_).to(dtype),
            detector.n_neighbors,
        )
    images = detector.image_shape_ is not None
    input_shape = _chw(detector) if images and detector._model() == "conv" else None
    return AutoencoderScore(
        _scaling(detector), _cpu_copy(detector.network_).to(dtype), detector._score_rule(), input_shape, images
    )


def _subcluster(detector):
    dtype = _compute_dtype(detector)
    rule = "knn" if len(detector.clusters_) == 1 else detector._score_rule()
    if detector.network_ is None:
        # One sub-cluster: every rule is Euclidean k-NN in the PCA embedding.
        network, rule, metric = None, "knn", "euclidean"
        embedding = tuple(_cpu_tensor(t).to(dtype) for t in detector.embedding_)
    else:
        n_transforms = detector._n_transforms()
        if rule == "odin":
            network = _cpu_copy(detector.network_).to(dtype).requires_grad_(False)
            return OdinScore(
                _scaling(detector), network, _chw(detector), detector.temperature, detector.epsilon, dtype,
                n_transforms,
            )  # fmt: skip
        network, metric, embedding = _cpu_copy(detector.network_).to(dtype), detector.metric, None
    transformations = getattr(detector, "transformations_", None)
    if transformations is not None:
        transformations = _cpu_copy(transformations)
    reference = _cpu_tensor(detector.train_features_).to(dtype)
    if metric == "cosine":
        reference = torch.nn.functional.normalize(reference, dim=1)
    return SubClusterScore(
        _scaling(detector), network, rule, _chw(detector), reference, detector.n_neighbors, metric, embedding, dtype,
        transformations,
    )  # fmt: skip


def _adgan(detector):
    rule = detector._score_rule()
    if detector.search == "joint" and rule != "critic":
        raise ValueError(
            "ADGANDetector(search='joint') cannot be exported to ONNX: each sample and seed searches "
            "with its own copy of the generator's weights (vmapped weight gradients and a fused Adam "
            f"over {detector.n_seeds} copies per sample), which torch's exporter cannot translate. "
            "Fit with search='latent' (the generator fixed, Adam on the latent vectors only: that "
            "search exports), score with score_type='critic' (no search), or serve the joint search "
            "from Python (skgeoad.save / joblib)."
        )
    dtype = _compute_dtype(detector)
    images = detector.image_shape_ is not None
    return LatentSearchScore(
        _scaling(detector),
        _cpu_copy(detector.generator_).to(dtype).requires_grad_(False),
        _cpu_tensor(detector.latent_seeds_).to(dtype),
        detector.image_shape_,
        detector._side if images else None,
        detector.n_search_steps,
        detector.latent_lr,
        _SEARCH_BETAS,
        rule,
        _cpu_copy(detector.critic_).to(dtype).requires_grad_(False) if rule != "reconstruction" else None,
        _cpu_tensor(detector._score_moments(rule)) if rule in ADGAN_COMBINED_RULES else None,
        detector.critic_orientation_,
    )


__all__ = ["OPSET_VERSION", "export_onnx", "scoring_module"]
