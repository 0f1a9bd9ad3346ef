"""Weight initialisation shared by the networks, driven by an explicit generator, and the
record of each network's constructor arguments that :mod:`skgeoad.persistence` rebuilds it from."""

import functools
import inspect
import math

import torch
from torch import nn


@torch.no_grad()
def init_weights_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Initialise every layer of ``module`` in place.

    Convolutions get He-normal weights ``N(0, sqrt(2 / fan_in))`` (the GEOM
    authors' choice for the Wide ResNet, suited to ReLU networks); linear layers
    get ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` weights and zero biases (Keras'
    dense initialiser in the same code); normalisation layers start at the
    identity. All randomness comes from ``generator``, so two networks built
    with equally seeded generators are equal and the global RNG is untouched.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(
                layer.weight, mode="fan_in", nonlinearity="relu", generator=generator
            )
            if layer.bias is not None:
                layer.bias.zero_()
        elif isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
        elif isinstance(layer, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            layer.reset_parameters()


def records_arguments(cls):
    """Class decorator: an instance keeps the arguments it was built with in ``init_arguments``.

    ``init_arguments`` maps each constructor parameter (defaults filled in) to
    its value, so that :func:`skgeoad.save` can store the architecture as
    data and :func:`skgeoad.load` rebuild it without pickling the module. An
    argument named ``generator`` is left out: it only draws initial weights,
    which the saved state replaces.

    Examples
    --------
    >>> from skgeoad.networks import MLP
    >>> MLP(20, 4, hidden_sizes=(8,)).init_arguments
    {'in_features': 20, 'num_outputs': 4, 'hidden_sizes': (8,), 'batch_norm': True}
    """
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # Only the class decorated last in the hierarchy records (a subclass's own arguments).
        if type(self).__init__ is __init__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = list(bound.arguments.items())[1:]
            self.init_arguments = {name: value for name, value in arguments if name != "generator"}

    cls.__init__ = __init__
    return cls


class FeatureClassifier(nn.Module):
    """Shared tail of the classifiers: ``forward = forward_head(forward_features(x))``.

    Subclasses define ``forward_features`` and a final linear layer ``fc``;
    the split (as in timm) is what the k-NN score and embeddings need.
    """

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all weights from ``generator`` (see :func:`init_weights_`)."""
        init_weights_(self, generator)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class AdaptiveMeanPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(size)`` as means over slices, with a deterministic backward.

    Output cell ``i`` averages input rows ``floor(i H / size)`` to
    ``ceil((i + 1) H / size)`` (likewise columns), exactly the windows of
    ``AdaptiveAvgPool2d``; but its gradient is a broadcast per slice, where
    torch's CUDA kernel adds atomically and so differs from run to run (and
    raises under ``torch.use_deterministic_algorithms``).
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def _windows(self, length):
        return [(i * length // self.size, -(-(i + 1) * length // self.size)) for i in range(self.size)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, columns = self._windows(x.shape[-2]), self._windows(x.shape[-1])
        cells = [x[..., r0:r1, c0:c1].mean((-2, -1)) for r0, r1 in rows for c0, c1 in columns]
        return torch.stack(cells, dim=-1).unflatten(-1, (self.size, self.size))
