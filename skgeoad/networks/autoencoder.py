"""Autoencoders: a fully connected one for any input, a convolutional one for images."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._init import init_weights_, records_arguments

#: Output layers: ``"sigmoid"`` for inputs in [0, 1] (pixel intensities),
#: ``"linear"`` for unbounded (standardised) features.
OUTPUTS = ("sigmoid", "linear")

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _output_layer(output: str) -> nn.Module:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")
    return nn.Sigmoid() if output == "sigmoid" else nn.Identity()


class Autoencoder(nn.Module):
    """Shared tail of the autoencoders: ``forward = decode(encode(x))``.

    Subclasses define the ``encoder`` and ``decoder`` modules; ``encode``
    returns the bottleneck code, of size ``code_size``.
    """

    code_size: int

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all weights from ``generator`` (see ``init_weights_``)."""
        init_weights_(self, generator)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _dense_stack(widths: Sequence[int], activation: str) -> list[nn.Module]:
    """``Linear - activation`` between consecutive ``widths``, the last layer left linear."""
    layers = []
    for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return layers


@records_arguments
class MLPAutoencoder(Autoencoder):
    """Fully connected encoder ``in_features -> hidden_sizes`` and its mirror image.

    The last of ``hidden_sizes`` is the bottleneck, left linear; every other
    layer but the output is followed by ``activation``.

    Parameters
    ----------
    in_features : int
        Size of each (flat) input vector.
    hidden_sizes : sequence of int
        Encoder widths, ending with the code size; the decoder runs them
        backwards.
    activation : {"relu", "tanh"}, default="relu"
    output : {"sigmoid", "linear"}, default="linear"
        ``"sigmoid"`` when the inputs lie in [0, 1].

    Examples
    --------
    >>> net = MLPAutoencoder(64, (32, 8), output="sigmoid").eval()
    >>> x = torch.rand(5, 64)
    >>> net.encode(x).shape, net(x).shape
    (torch.Size([5, 8]), torch.Size([5, 64]))
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (512, 256, 128, 60, 10),
        activation: str = "relu",
        output: str = "linear",
    ):
        super().__init__()
        hidden_sizes = tuple(hidden_sizes)
        if not hidden_sizes or any(size < 1 for size in hidden_sizes):
            raise ValueError(f"hidden sizes must be a non-empty list of positive ints, got {hidden_sizes}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}.")
        widths = (in_features, *hidden_sizes)
        self.code_size = hidden_sizes[-1]
        self.encoder = nn.Sequential(*_dense_stack(widths, activation))
        decoder = _dense_stack(widths[::-1], activation)
        self.decoder = nn.Sequential(*decoder, _output_layer(output))


@records_arguments
class ConvAutoencoder(Autoencoder):
    """Strided-convolution encoder to a dense code, transposed-convolution decoder.

    Each encoder stage halves the image (3x3 convolutions, stride 2, ReLU);
    a linear layer maps the last feature map to the code. The decoder
    mirrors it with 4x4 transposed convolutions and crops the result to the
    input size, so any ``height`` and ``width`` work (8x8 digits included).

    Parameters
    ----------
    in_channels, height, width : int
        Input image shape (channels first).
    code_size : int, default=32
        Bottleneck size.
    widths : sequence of int, default=(32, 64)
        Channels of the encoder stages.
    output : {"sigmoid", "linear"}, default="sigmoid"

    Examples
    --------
    >>> net = ConvAutoencoder(1, 28, 28, code_size=10).eval()
    >>> x = torch.rand(4, 1, 28, 28)
    >>> net.encode(x).shape, net(x).shape
    (torch.Size([4, 10]), torch.Size([4, 1, 28, 28]))
    """

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        code_size: int = 32,
        widths: Sequence[int] = (32, 64),
        output: str = "sigmoid",
    ):
        super().__init__()
        widths = tuple(widths)
        if not widths or code_size < 1:
            raise ValueError("need at least one convolution stage and a positive code size.")
        self.code_size = code_size
        self.image_size = (height, width)
        stages = len(widths)
        self.map_size = (math.ceil(height / 2**stages), math.ceil(width / 2**stages))
        flat = widths[-1] * self.map_size[0] * self.map_size[1]

        encoder = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(flat, code_size))

        decoder = [nn.Linear(code_size, flat), nn.ReLU(), nn.Unflatten(1, (widths[-1], *self.map_size))]
        channels = (*widths[::-1], in_channels)
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            decoder.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(channels) - 2:
                decoder.append(nn.ReLU())
        decoder.append(_output_layer(output))
        self.decoder = nn.Sequential(*decoder)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        height, width = self.image_size
        return self.decoder(code)[..., :height, :width]
