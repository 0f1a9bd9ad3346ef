import pytest
import torch

from skgeoad._torch import batch_bounds, build_module
from skgeoad.networks import MLP, WideResNet


@pytest.mark.parametrize("side, channels", [(8, 1), (28, 1), (32, 3)])
def test_wide_resnet_takes_any_image_size(side, channels):
    network = WideResNet(channels, 72, depth=10, widen_factor=2).eval()
    x = torch.randn(3, channels, side, side)
    assert network(x).shape == (3, 72)
    assert network.forward_features(x).shape == (3, 128)


def test_wide_resnet_10_4_has_the_papers_layout():
    network = WideResNet(3, 72, depth=10, widen_factor=4)
    widths = [group[0].conv1.out_channels for group in network.groups]
    strides = [group[0].conv1.stride[0] for group in network.groups]
    assert widths == [64, 128, 256] and strides == [1, 2, 2]
    assert all(len(group) == 1 for group in network.groups)
    assert all(not conv.bias for conv in network.modules() if isinstance(conv, torch.nn.Conv2d))
    assert WideResNet(3, 10, depth=16).groups[0].__len__() == 2


def test_bad_depth_is_a_value_error():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(1, 4, depth=12)


def test_conv_init_is_he_normal():
    network = build_module(lambda: WideResNet(1, 4, 10, 4), torch.Generator().manual_seed(0), torch.device("cpu"))
    conv = network.groups[2][0].conv2  # 256 x 256 x 3 x 3
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)


def test_build_module_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    first = build_module(lambda: MLP(5, 3, (8,)), torch.Generator().manual_seed(1), torch.device("cpu"))
    second = build_module(lambda: MLP(5, 3, (8,)), torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(first.body[1].running_var, torch.ones(8))  # BatchNorm buffers initialised


def test_mlp_shapes_and_validation():
    network = MLP(6, 4, (16, 8)).eval()
    assert network(torch.randn(5, 6)).shape == (5, 4)
    assert network.forward_features(torch.randn(5, 6)).shape == (5, 8)
    with pytest.raises(ValueError, match="positive"):
        MLP(6, 4, (0,))


@pytest.mark.parametrize("n, size", [(10, 3), (9, 4), (1, 4), (257, 128)])
def test_batch_bounds_cover_everything_without_single_item_batches(n, size):
    bounds = batch_bounds(n, size)
    covered = [i for start, stop in bounds for i in range(start, stop)]
    assert covered == list(range(n))
    assert n == 1 or all(stop - start > 1 for start, stop in bounds)
