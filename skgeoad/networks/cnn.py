"""A small convolutional classifier for small grey images (MNIST-like)."""

import torch
from torch import nn

from ._init import AdaptiveMeanPool2d, FeatureClassifier, records_arguments


@records_arguments
class SmallCNN(FeatureClassifier):
    """Two convolutional and two fully connected layers (Lee & Lee's MNIST network).

    ``[conv3x3 - BN - ReLU - maxpool2] x 2 - adaptive average pool to 2x2 -
    Linear(4 * width2 -> hidden) - ReLU - Linear(hidden -> num_classes)``.
    The adaptive pool makes the network take any image of at least 4x4.

    Parameters
    ----------
    in_channels : int
    num_classes : int
    widths : tuple of int, default=(32, 64)
        Channels of the two convolutions.
    hidden : int, default=128
        Width of the first fully connected layer (the feature space).

    Examples
    --------
    >>> SmallCNN(1, num_classes=5).eval()(torch.randn(3, 1, 28, 28)).shape
    torch.Size([3, 5])
    """

    def __init__(self, in_channels: int, num_classes: int, widths=(32, 64), hidden: int = 128):
        super().__init__()
        first, second = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1, bias=False),
            nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1, bias=False),
            nn.BatchNorm2d(second),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            AdaptiveMeanPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * second, hidden),
            nn.ReLU(inplace=True),
        )
        self.num_features = hidden
        self.fc = nn.Linear(hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
