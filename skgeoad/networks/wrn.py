"""Pre-activation Wide Residual Network (Zagoruyko & Komodakis, 2016).

The variant used by Golan & El-Yaniv (2018): three groups of pre-activation
basic blocks with widths ``16k, 32k, 64k`` and strides ``1, 2, 2``, convolutions
without bias, no dropout, and a ``BN - ReLU - global average pool - Linear``
head. Global *adaptive* pooling replaces the reference code's fixed 8x8 pool,
so any input size works: a 32x32 image ends on an 8x8 map as in the paper, an
8x8 digit on a 2x2 map.
"""

import torch
from torch import nn

from ._init import FeatureClassifier, records_arguments


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus a shortcut.

    When the block changes width or resolution, the shortcut is a 1x1
    convolution of the *activated* input, as in the reference implementation.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.projection = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(activated)
        x = self.conv1(activated)
        x = self.conv2(self.relu(self.bn2(x)))
        return x + shortcut


@records_arguments
class WideResNet(FeatureClassifier):
    """WRN-``depth``-``widen_factor`` classifier for images of any size.

    Parameters
    ----------
    in_channels : int
        Channels of the input images (1 for grey, 3 for RGB).
    num_classes : int
        Size of the output layer.
    depth : int, default=10
        Total depth ``6n + 4``: ``n`` blocks in each of the three groups.
    widen_factor : int, default=4
        Width multiplier ``k`` of the three groups (``16k, 32k, 64k``).

    Examples
    --------
    >>> network = WideResNet(in_channels=1, num_classes=72, depth=10, widen_factor=4).eval()
    >>> network(torch.randn(2, 1, 32, 32)).shape
    torch.Size([2, 72])
    >>> network.forward_features(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 256])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 10,
        widen_factor: int = 4,
    ):
        super().__init__()
        if depth < 4 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 0 (10, 16, 22, 28, ...), got {depth}.")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be a positive integer, got {widen_factor}.")
        blocks_per_group = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)

        self.stem = conv3x3(in_channels, 16)
        groups = []
        in_width = 16
        for width, stride in zip(widths, (1, 2, 2)):
            groups.append(self._make_group(in_width, width, blocks_per_group, stride))
            in_width = width
        self.groups = nn.Sequential(*groups)
        self.final_norm = nn.BatchNorm2d(in_width)
        self.relu = nn.ReLU(inplace=True)
        self.num_features = in_width
        self.fc = nn.Linear(in_width, num_classes)
        self._full_resolution_width = max(16, widths[0])

    def activation_elements(self, height: int, width: int) -> int:
        """Elements of the widest activation map one ``height x width`` input makes (the
        first group's, at full resolution): what sizes inference passes to a memory budget."""
        return self._full_resolution_width * height * width

    @staticmethod
    def _make_group(in_width: int, width: int, n_blocks: int, stride: int) -> nn.Sequential:
        if n_blocks == 0:
            # WRN-4-k: the group only changes width and resolution.
            return nn.Sequential(nn.Conv2d(in_width, width, 1, stride=stride, bias=False))
        blocks = [PreActBlock(in_width, width, stride)]
        blocks += [PreActBlock(width, width) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, shape ``(n, 64 * widen_factor)``."""
        x = self.groups(self.stem(x))
        x = self.relu(self.final_norm(x))
        # A mean, not AdaptiveAvgPool2d(1): its CUDA backward adds atomically
        # (non-deterministic); the mean's backward is a plain broadcast.
        return x.mean((2, 3))
