"""DCGAN-style generator and critic (Radford et al., 2016) for square images of side 4 * 2^m."""

import math

import torch
from torch import nn

from ._init import init_weights_, records_arguments


def dcgan_side(height: int, width: int) -> int:
    """The smallest side ``4 * 2^m`` (``m >= 1``) holding a ``height x width`` image."""
    return max(8, 4 * 2 ** math.ceil(math.log2(max(height, width) / 4)))


def _stages(image_size: int) -> int:
    stages = int(math.log2(image_size // 4))
    if image_size < 8 or 4 * 2**stages != image_size:
        raise ValueError(f"DCGAN networks need a side of 4 * 2^m >= 8 (8, 16, 32, 64, ...), got {image_size}.")
    return stages


@records_arguments
class DCGANGenerator(nn.Module):
    """DCGAN generator: a linear map to 4x4 feature maps, then stride-2 transposed convolutions.

    ``Linear -> 4x4 x w -> [ConvT(4, stride 2) - BN - ReLU] x (m - 1) -> ConvT -> tanh``. The widths halve at each doubling of the resolution and end at
    ``base_width`` before the output layer: for 32x32 images and
    ``base_width=64``, ``4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32xC``.

    Parameters
    ----------
    latent_dim : int
    out_channels : int
    image_size : int
        Side of the square output, ``4 * 2^m`` with ``m >= 1``.
    base_width : int, default=64

    Examples
    --------
    >>> DCGANGenerator(latent_dim=256, out_channels=1, image_size=32).eval()(torch.randn(4, 256)).shape
    torch.Size([4, 1, 32, 32])
    """

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, base_width: int = 64):
        super().__init__()
        stages = _stages(image_size)
        width = base_width * 2 ** (stages - 1)
        self.project = nn.Linear(latent_dim, width * 16, bias=False)
        self.unflatten = nn.Unflatten(1, (width, 4, 4))
        layers = [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        init_weights_(self, generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.unflatten(self.project(z)))


@records_arguments
class DCGANCritic(nn.Module):
    """DCGAN critic: stride-2 convolutions down to 4x4, then a linear score.

    ``[Conv(4, stride 2) - norm - LeakyReLU(0.2)] x m -> Linear(1)``. Normalisation is per sample (``GroupNorm`` with one group, i.e. layer
    norm), never batch norm: the gradient penalty of WGAN-GP is defined per
    sample.

    Parameters
    ----------
    in_channels : int
    image_size : int
        Side of the square input, ``4 * 2^m`` with ``m >= 1``.
    base_width : int, default=64

    Examples
    --------
    >>> DCGANCritic(in_channels=3, image_size=32)(torch.randn(4, 3, 32, 32)).shape
    torch.Size([4])
    """

    def __init__(self, in_channels: int, image_size: int, base_width: int = 64):
        super().__init__()
        stages = _stages(image_size)
        layers = []
        width_in, width = in_channels, base_width
        for stage in range(stages):
            layers.append(nn.Conv2d(width_in, width, 4, stride=2, padding=1))
            if stage:
                layers.append(nn.GroupNorm(1, width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width_in, width = width, width * 2
        layers += [nn.Flatten(), nn.Linear(width_in * 16, 1)]
        self.body = nn.Sequential(*layers)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        init_weights_(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)
