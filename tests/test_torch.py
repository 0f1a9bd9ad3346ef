"""What ``mixed_precision="auto"`` and the memory layout resolve to, with the hardware mocked."""

import pytest
import torch

from skgeoad import config_context
from skgeoad._torch import memory_format, native_bf16, place_module, use_mixed_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def mock_cpu(monkeypatch, *, amx, avx512_bf16):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


@pytest.mark.parametrize(
    "amx, avx512_bf16, expected",
    [(True, True, True), (True, False, True), (False, True, True), (False, False, False)],
)
def test_auto_is_bf16_on_cpus_that_compute_it_natively(monkeypatch, amx, avx512_bf16, expected):
    mock_cpu(monkeypatch, amx=amx, avx512_bf16=avx512_bf16)
    assert native_bf16(CPU) is expected
    assert use_mixed_precision("auto", CPU) is expected


def test_auto_is_float32_where_torch_cannot_tell(monkeypatch):
    # A torch build without the instruction-set probes: no claim of native bf16.
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert use_mixed_precision("auto", CPU) is False


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_follows_the_devices_bf16_support(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: supported)
    mock_cpu(monkeypatch, amx=not supported, avx512_bf16=not supported)  # the host CPU does not count
    assert use_mixed_precision("auto", CUDA) is supported


def test_other_devices_and_explicit_choices(monkeypatch):
    mock_cpu(monkeypatch, amx=True, avx512_bf16=True)
    assert use_mixed_precision("auto", torch.device("mps")) is False
    assert use_mixed_precision(False, CPU) is False
    mock_cpu(monkeypatch, amx=False, avx512_bf16=False)
    assert use_mixed_precision(True, CPU) is True


def test_networks_are_placed_in_the_configured_layout():
    def conv():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(4, 2))

    network = place_module(conv(), CPU)
    assert memory_format() == torch.channels_last
    assert network[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not network[0].weight.is_contiguous()
    assert network[1].weight.is_contiguous()  # 2-D weights have one layout
    with config_context(channels_last=False):
        assert memory_format() == torch.contiguous_format
        network = place_module(network, CPU, torch.float64)
        assert network[0].weight.is_contiguous() and network[0].weight.dtype == torch.float64
    with pytest.raises(ValueError, match="channels_last"):
        with config_context(channels_last="yes"):
            pass
