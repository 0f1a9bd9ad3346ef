"""Self-labelling transformations, applied batched on the device.

Two families, one interface (``n_transforms``, ``forward(x, labels)`` for a
batch with one transformation per sample, ``expand(x)`` for every
transformation of every sample):

* :class:`GeometricTransformations` - Golan & El-Yaniv's compositions of a
  horizontal flip, a translation and a rotation by a multiple of 90 degrees.
  Every such transformation only moves pixels, so each one is stored as a table
  of source-pixel indices and a whole mixed batch is transformed by a single
  ``gather``: no per-image Python, no interpolation.
* :class:`AffineTransformations` - GOAD's random linear maps ``x -> x W_m`` for
  tabular data (Bergman & Hoshen, 2020).

Both are ``nn.Module``s holding their tables as buffers, so they move to a
device with ``.to`` and pickle with the detector.
"""

import itertools

import torch
from torch import nn

from .networks._init import records_arguments

#: Which factors each named set of image transformations combines.
TRANSFORMATION_SETS = {
    "all": ("flip", "translate", "rotate"),
    "translations_rotations": ("translate", "rotate"),
    "flips_rotations": ("flip", "rotate"),
    "rotations": ("rotate",),
}


def _symmetric_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map out-of-range coordinates back inside like ``np.pad(mode="symmetric")``.

    The edge pixel is repeated (``... b a | a b ... | z y ...``), which is what
    ``scipy.ndimage``'s ``mode="reflect"`` used by the reference code does.
    Valid for coordinates in ``[-size, 2 * size)``.
    """
    index = torch.where(index < 0, -index - 1, index)
    return torch.where(index >= size, 2 * size - 1 - index, index)


@records_arguments
class GeometricTransformations(nn.Module):
    """Flips, translations and 90-degree rotations of images as index tables.

    Transformation ``(flip, tx, ty, k)`` first mirrors the width axis if
    ``flip``, then translates, ``out[i, j] = in[i + tx, j + ty]`` with the
    uncovered border filled by symmetric reflection, then rotates by ``k``
    quarter turns like ``np.rot90(out, k)``. The labels enumerate
    ``itertools.product(flips, (0, -tx, +tx), (0, -ty, +ty), range(4))`` as in
    the paper's code, so with ``kind="all"`` the label of
    ``(flip, tx_i, ty_i, k)`` is ``36 flip + 12 tx_i + 4 ty_i + k``. Reduced
    sets drop the factors they do not use and keep the same order.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    kind : {"all", "translations_rotations", "flips_rotations", "rotations"}
        Which factors to combine: 72, 36, 8 or 4 transformations.
    shift : tuple of int or None, default=None
        Translation ``(tx, ty)`` in pixels along height and width; ``None``
        uses a quarter of each side (8 for 32x32 images, as in the paper).

    Examples
    --------
    >>> transformations = GeometricTransformations(32, 32)
    >>> transformations.n_transforms, transformations.transformation_params[37]
    (72, (True, 0, 0, 1))
    >>> images = torch.randn(2, 3, 32 * 32)            # (n, channels, flat pixels)
    >>> transformations.expand(images).shape           # every transformation of both
    torch.Size([144, 3, 32, 32])
    """

    def __init__(self, height: int, width: int, kind: str = "all", shift=None):
        super().__init__()
        if kind not in TRANSFORMATION_SETS:
            raise ValueError(
                f"Unknown transformation set {kind!r}; choose one of {sorted(TRANSFORMATION_SETS)}."
            )
        factors = TRANSFORMATION_SETS[kind]
        if "rotate" in factors and height != width:
            raise ValueError(
                f"Rotations by 90 degrees need square images, got {height}x{width}; "
                "pad the images to a square first."
            )
        if shift is None:
            shift = (height // 4, width // 4)
        if "translate" in factors and min(shift) < 1:
            raise ValueError(
                f"Images of {height}x{width} pixels are too small for translations "
                f"(a quarter of the side rounds to 0); they need at least 4x4 pixels, "
                f"or use transformations='flips_rotations' or 'rotations'."
            )
        if "translate" in factors and (shift[0] >= height or shift[1] >= width):
            raise ValueError(f"shift {shift} must be smaller than the image ({height}x{width}).")
        self.height, self.width, self.kind = height, width, kind
        self.shift = tuple(int(s) for s in shift)

        flips = (False, True) if "flip" in factors else (False,)
        txs = (0, -self.shift[0], self.shift[0]) if "translate" in factors else (0,)
        tys = (0, -self.shift[1], self.shift[1]) if "translate" in factors else (0,)
        turns = range(4) if "rotate" in factors else (0,)
        self.transformation_params = list(itertools.product(flips, txs, tys, turns))
        tables = [self._source_index(*params) for params in self.transformation_params]
        self.register_buffer("index", torch.stack(tables))

    @property
    def n_transforms(self) -> int:
        return len(self.transformation_params)

    def _source_index(self, flip: bool, tx: int, ty: int, turns: int) -> torch.Tensor:
        """Flat index of the input pixel that lands on each output pixel.

        Walks the composition backwards: from an output coordinate through the
        inverse rotation, the translation and the flip to the input coordinate.
        """
        h, w = self.height, self.width
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        # np.rot90(a)[i, j] == a[j, n - 1 - i] for a square n x n array.
        for _ in range(turns):
            rows, cols = cols, h - 1 - rows
        rows = _symmetric_index(rows + tx, h)
        cols = _symmetric_index(cols + ty, w)
        if flip:
            cols = w - 1 - cols
        return (rows * w + cols).flatten()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Apply transformation ``labels[i]`` to image ``x[i]``.

        ``x`` has shape ``(n, channels, height * width)`` (flat pixels), the
        result ``(n, channels, height, width)``, in the memory layout of ``x``
        (see :meth:`expand`).
        """
        n, channels = x.shape[:2]
        pixels = x.transpose(1, 2)  # (n, hw, channels): a view of channels-last input
        index = self.index[labels].unsqueeze(2).expand(-1, -1, channels)
        return self._as_images(pixels.gather(1, index), x)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """All transformations of every image, image-major.

        ``(n, channels, height * width) -> (n * n_transforms, channels, height, width)``;
        row ``i * n_transforms + t`` is transformation ``t`` of image ``i``.

        The pixels are gathered as ``(pixel, channel)`` rows, so channels-last
        input (the transposed view of rows that hold each pixel's channels
        together) gives channels-last images without a copy of its own;
        other input gives contiguous (NCHW) images.
        """
        n, channels = x.shape[:2]
        out = x.transpose(1, 2)[:, self.index]  # (n, T, hw, channels)
        return self._as_images(out.reshape(n * self.n_transforms, -1, channels), x)

    def _as_images(self, pixels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(m, hw, channels)`` pixel rows as ``(m, channels, height, width)`` images:
        channels-last when ``like`` (the input) holds each pixel's channels together
        (its channel stride is 1), else in torch's default contiguous layout.

        The test is on the stride, not on ``is_contiguous``: with one channel both
        layouts count as contiguous, and convolutions pick their kernels by the
        strides (a stride of 1 on the channel axis selects channels-last ones).
        """
        images = pixels.unflatten(1, (self.height, self.width)).permute(0, 3, 1, 2)
        if like.stride(1) == 1:
            return images
        return images.clone(memory_format=torch.contiguous_format)


@records_arguments
class AffineTransformations(nn.Module):
    """GOAD's random affine maps for tabular data: ``T_m(x) = x W_m``.

    Parameters
    ----------
    n_features : int
        Dimension of the inputs.
    n_transforms : int
        Number ``M`` of random maps (classes of the self-labelled task).
    out_features : int
        Dimension ``r`` of each map's output.
    generator : torch.Generator, optional
        Source of the ``N(0, 1)`` matrix entries.

    Examples
    --------
    >>> maps = AffineTransformations(10, 4, 3, generator=torch.Generator().manual_seed(0))
    >>> maps.expand(torch.randn(5, 10)).shape
    torch.Size([20, 3])
    """

    def __init__(self, n_features: int, n_transforms: int, out_features: int, generator=None):
        super().__init__()
        weights = torch.randn(n_transforms, n_features, out_features, generator=generator)
        self.register_buffer("weights", weights)

    @property
    def n_transforms(self) -> int:
        return self.weights.shape[0]

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Map ``x[i]`` (shape ``(n, n_features)``) with ``W[labels[i]]``."""
        return torch.bmm(x.unsqueeze(1), self.weights[labels]).squeeze(1)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """All maps of every sample, image-major: ``(n * n_transforms, out_features)``."""
        return torch.einsum("nd,mdr->nmr", x, self.weights).flatten(0, 1)
