import itertools

import numpy as np
import pytest
import torch

from skgeoad.transforms import AffineTransformations, GeometricTransformations


def numpy_reference(image, flip, tx, ty, turns):
    """GEOM's transformation of one (H, W, C) image, with plain numpy operations."""
    out = np.flip(image, axis=1) if flip else image
    h, w = out.shape[:2]
    pad = max(abs(tx), abs(ty))
    padded = np.pad(out, [(pad, pad), (pad, pad), (0, 0)], mode="symmetric")
    out = padded[pad + tx : pad + tx + h, pad + ty : pad + ty + w]
    return np.rot90(out, turns, axes=(0, 1))


def as_flat_batch(images):
    """(n, H, W, C) numpy -> (n, C, H*W) torch, the layout the transformations take."""
    n, h, w, c = images.shape
    return torch.from_numpy(np.ascontiguousarray(images)).reshape(n, h * w, c).transpose(1, 2).contiguous()


def to_channels_last(tensor):
    return tensor.permute(0, 2, 3, 1).numpy()


@pytest.fixture
def image():
    return np.random.default_rng(0).normal(size=(32, 32, 3)).astype(np.float32)


def test_72_transformations_match_numpy_in_the_papers_order(image):
    transformations = GeometricTransformations(32, 32, "all")
    assert transformations.n_transforms == 72
    expanded = to_channels_last(transformations.expand(as_flat_batch(image[None])))
    order = itertools.product((False, True), (0, -8, 8), (0, -8, 8), range(4))
    for label, (flip, tx, ty, turns) in enumerate(order):
        tx_i, ty_i = (0, -8, 8).index(tx), (0, -8, 8).index(ty)
        assert label == 36 * flip + 12 * tx_i + 4 * ty_i + turns
        assert transformations.transformation_params[label] == (flip, tx, ty, turns)
        np.testing.assert_array_equal(expanded[label], numpy_reference(image, flip, tx, ty, turns))


def test_translation_repeats_the_edge_like_symmetric_padding():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    transformations = GeometricTransformations(4, 4, "translations_rotations")
    label = transformations.transformation_params.index((False, -1, 0, 0))
    out = to_channels_last(transformations(as_flat_batch(image[None]), torch.tensor([label])))[0]
    # out[i] = in[i - 1]: the first row is the edge row repeated.
    np.testing.assert_array_equal(out[0], image[0])
    np.testing.assert_array_equal(out[1:], image[:-1])


@pytest.mark.parametrize("kind, n", [("rotations", 4), ("flips_rotations", 8), ("translations_rotations", 36)])
def test_reduced_sets_are_subsets_in_the_same_order(kind, n, image):
    transformations = GeometricTransformations(32, 32, kind)
    assert transformations.n_transforms == n
    expanded = to_channels_last(transformations.expand(as_flat_batch(image[None])))
    for label, params in enumerate(transformations.transformation_params):
        np.testing.assert_array_equal(expanded[label], numpy_reference(image, *params))


def test_mixed_batch_applies_one_transformation_per_image():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(5, 12, 12, 2)).astype(np.float32)
    transformations = GeometricTransformations(12, 12)
    labels = torch.tensor([0, 71, 13, 40, 5])
    out = to_channels_last(transformations(as_flat_batch(images), labels))
    for i, label in enumerate(labels.tolist()):
        expected = numpy_reference(images[i], *transformations.transformation_params[label])
        np.testing.assert_array_equal(out[i], expected)


def test_expand_is_image_major():
    images = np.random.default_rng(2).normal(size=(3, 8, 8, 1)).astype(np.float32)
    transformations = GeometricTransformations(8, 8)
    flat = as_flat_batch(images)
    expanded = transformations.expand(flat)
    assert expanded.shape == (3 * 72, 1, 8, 8)
    labels = torch.arange(72).repeat(3)
    mixed = transformations(flat.repeat_interleave(72, dim=0), labels)
    torch.testing.assert_close(expanded, mixed)


def test_shift_is_a_quarter_of_the_side():
    assert GeometricTransformations(32, 32).shift == (8, 8)
    assert GeometricTransformations(28, 28).shift == (7, 7)
    assert GeometricTransformations(8, 8).shift == (2, 2)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="too small for translations"):
        GeometricTransformations(3, 3)
    with pytest.raises(ValueError, match="square"):
        GeometricTransformations(8, 12, "rotations")
    with pytest.raises(ValueError, match="Unknown transformation set"):
        GeometricTransformations(8, 8, "everything")
    # Flips and rotations need no minimum size.
    assert GeometricTransformations(2, 2, "flips_rotations").n_transforms == 8


def test_affine_transformations_are_random_linear_maps():
    generator = torch.Generator().manual_seed(0)
    maps = AffineTransformations(5, 7, 3, generator)
    x = torch.randn(4, 5)
    labels = torch.tensor([0, 6, 2, 2])
    expected = torch.stack([x[i] @ maps.weights[label] for i, label in enumerate(labels)])
    torch.testing.assert_close(maps(x, labels), expected)
    expanded = maps.expand(x)
    assert expanded.shape == (4 * 7, 3)
    torch.testing.assert_close(expanded[7 * 1 + 6], x[1] @ maps.weights[6])
    same = AffineTransformations(5, 7, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same.weights, maps.weights)
