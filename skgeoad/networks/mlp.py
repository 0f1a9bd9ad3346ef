"""A plain multi-layer perceptron for tabular data."""

from collections.abc import Sequence

import torch
from torch import nn

from ._init import FeatureClassifier, records_arguments


@records_arguments
class MLP(FeatureClassifier):
    """``[Linear - BatchNorm - ReLU] * len(hidden_sizes)`` followed by a linear head.

    Parameters
    ----------
    in_features : int
        Size of each input vector.
    num_outputs : int
        Size of the output layer.
    hidden_sizes : sequence of int, default=(64,)
        Width of each hidden layer; empty for a linear model.
    batch_norm : bool, default=True
        Normalise each hidden layer's pre-activations.

    Examples
    --------
    >>> MLP(20, 4, hidden_sizes=(64, 32)).eval()(torch.randn(8, 20)).shape
    torch.Size([8, 4])
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        hidden_sizes: Sequence[int] = (64,),
        batch_norm: bool = True,
    ):
        super().__init__()
        if any(size < 1 for size in hidden_sizes):
            raise ValueError(f"hidden sizes must be positive, got {tuple(hidden_sizes)}.")
        layers = []
        width = in_features
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU(inplace=True))
            width = size
        self.body = nn.Sequential(*layers)
        self.num_features = width
        self.fc = nn.Linear(width, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
