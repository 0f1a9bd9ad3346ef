"""Torch plumbing shared by the detectors: devices, seeding, batching, training.

Nothing here knows about a particular detector or network architecture.

Precision policy
----------------
Every detector follows one rule about bf16 (``mixed_precision=True``, the
default wherever the device computes bf16 natively: CUDA devices that support
it, and CPUs with AMX or AVX512-BF16 instructions, see :func:`native_bf16`):

* **May run under bf16 autocast**: a network's forward and backward pass
  while it trains on its own loss (the classifiers, the autoencoders, the
  GAN's critic and generator steps), and plain inference whose output is a
  probability or a feature read once (GEOM's softmax outputs, the sub-cluster
  classifier's softmax and features, the autoencoder's reconstructions).
  Their outputs are cast to float32 (or the detector's float64) before
  anything is reduced.
  The critic's gradient penalty in ADGAN's training is part of that
  training pass.
* **Never runs under bf16**: anything differentiated with respect to inputs
  or latent vectors, whose steps are far below bf16's resolution of ~0.4 %
  (ODIN's perturbation of 0.0014 and its logits / 1000; both ADGAN searches,
  whose generator steps of 5e-5 would mostly vanish); losses, sufficient
  statistics and sums (the Dirichlet statistics are accumulated in float64);
  distances, k-NN similarities, clusterings and Gaussian mixtures.

:func:`autocast` is the only way the detectors enter bf16, so a search for it
finds every place the first list covers. "Full precision" is float32 as torch
computes it: on NVIDIA GPUs cuDNN convolutions default to TF32 (10-bit
mantissa, 8 times bf16's resolution), which torch's
``torch.backends.cudnn.allow_tf32 = False`` turns off process-wide.
"""

import contextlib
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ._config import get_config
from ._warnings import warn


#: Device types that hold no data to compute with: torch accepts them, but a
#: network run there produces no numbers.
_NON_COMPUTING_DEVICES = ("meta",)


def resolve_device(device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch reads it.

    Raises ``ValueError`` for a device string torch does not know, a device
    this machine does not have, and devices that cannot compute (``meta``).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    if resolved.type in _NON_COMPUTING_DEVICES:
        raise ValueError(f"device={device!r} holds no data and cannot compute; use 'cpu', 'cuda' or 'auto'.")
    if not device_available(resolved):
        raise ValueError(f"device={device!r} was requested but is not available on this machine.")
    return resolved


def device_available(device: torch.device) -> bool:
    """Whether ``device`` exists here and computes (a small sum comes back right)."""
    if device.type == "cpu":
        return True
    if device.type in _NON_COMPUTING_DEVICES:
        return False
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    try:
        return torch.ones(2, device=device).sum().item() == 2.0
    except (RuntimeError, AssertionError, NotImplementedError):
        return False


def fallback_device(saved_device: torch.device) -> torch.device:
    """The device an unpickled model lives on: where it was fitted if possible, else the CPU."""
    if device_available(saved_device):
        return saved_device
    warn(
        f"This model was fitted on {saved_device}, which is not available here; "
        "it was loaded on the CPU instead.",
    )
    return torch.device("cpu")


def seed_generators(random_state) -> tuple[np.random.Generator, torch.Generator]:
    """A NumPy and a (CPU) torch generator seeded from a scikit-learn ``random_state``.

    Local generators only: the global NumPy and torch RNGs are never reseeded,
    so fitting a detector does not disturb the caller's randomness.
    """
    from sklearn.utils import check_random_state

    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    torch_generator = torch.Generator().manual_seed(seed)
    return np.random.default_rng(seed), torch_generator


def build_module(
    factory, generator: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """Construct ``factory()`` without touching the global RNG, initialised from ``generator``.

    The module is built on the ``meta`` device (no memory, no default
    initialisation), materialised on the CPU, initialised by its
    ``reset_parameters(generator)``, and placed on ``device`` by
    :func:`place_module`: the same seed gives the same weights on every
    device and in every memory layout.
    """
    with torch.device("meta"):
        module = factory()
    module.to_empty(device="cpu")
    module.reset_parameters(generator)
    return place_module(module, device, dtype)


def memory_format() -> torch.memory_format:
    """The layout convolutional networks compute in: channels-last unless the
    ``channels_last`` setting (:func:`skgeoad.set_config`) is off."""
    return torch.channels_last if get_config()["channels_last"] else torch.contiguous_format


def place_module(module: torch.nn.Module, device, dtype=None) -> torch.nn.Module:
    """``module`` on ``device`` (in ``dtype`` when given), its 4-D weights in :func:`memory_format`.

    Every network goes through here, whether built, unpickled or loaded
    from a file: oneDNN (CPU) and cuDNN (GPU) pick channels-last kernels
    when the weights are channels-last, and then keep the activations so.
    Only 4-D tensors change layout, so fully connected networks are
    unaffected.
    """
    dtype = {} if dtype is None else {"dtype": dtype}
    return module.to(device=device, memory_format=memory_format(), **dtype)


def fused(device: torch.device) -> dict:
    """Keyword arguments that make a torch optimiser (Adam, SGD) fused on ``device``.

    A fused optimiser updates every parameter in one kernel per step. On a CPU
    that made GEOM's training steps (WRN-10-4, 8x8 digits, batch 128, bf16,
    Adam with weight decay) 1.3-1.4x faster than with torch's default
    multi-tensor update; on CUDA it saves kernel launches. The update is the
    same formula, rounded in another order. Devices without fused kernels get
    the default.
    """
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively, where bf16 autocast speeds networks up.

    CUDA devices that support bf16; CPUs whose instruction set has AMX
    tiles or AVX512-BF16 (oneDNN then runs bf16 convolutions and matrix
    products in hardware; without them it emulates bf16, more slowly than
    float32). Every other device: no.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has("_is_amx_tile_supported") or _cpu_has("_is_avx512_bf16_supported")
    return False


def _cpu_has(capability: str) -> bool:
    """One of ``torch.cpu``'s instruction-set probes; ``False`` where this torch lacks it."""
    probe = getattr(torch.cpu, capability, None)
    return bool(probe()) if probe is not None else False


def use_mixed_precision(mixed_precision, device: torch.device) -> bool:
    """Resolve ``mixed_precision="auto"``: bf16 autocast where ``device`` computes bf16
    natively (:func:`native_bf16`), float32 elsewhere; ``True`` / ``False`` as given."""
    if mixed_precision == "auto":
        return native_bf16(device)
    return bool(mixed_precision)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context.

    Only for what the precision policy (module docstring) allows to run in bf16.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def full_precision(device: torch.device):
    """A context that turns autocast off: for input and latent gradients,
    which the precision policy keeps out of bf16 even inside an autocast block."""
    return torch.autocast(device_type=device.type, enabled=False)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Deterministic torch kernels (and cuDNN) inside the block when ``enabled``.

    The previous settings are restored on exit, so a detector does not change
    the caller's global torch configuration.
    """
    if not enabled:
        yield
        return
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def check_finite_loss(loss: float, epoch: int, learning_rate: float, what: str = "training loss", limit=np.inf):
    """Stop a fit whose optimisation diverged, instead of returning NaN (or meaningless) scores.

    Parameters
    ----------
    limit : float, default=inf
        A loss above it counts as diverged too (a classifier far worse than
        chance has blown up even while its loss is still finite).

    Raises
    ------
    FloatingPointError
        Naming the epoch and suggesting a smaller ``learning_rate``.
    """
    if not np.isfinite(loss) or loss > limit:
        raise FloatingPointError(
            f"The {what} became {loss} at epoch {epoch}: the optimisation diverged. "
            f"Try a smaller learning_rate (it is {learning_rate:g})."
        )


def chance_loss_limit(n_classes: int) -> float:
    """Mean cross-entropy above which a classifier's training has diverged, even if finite.

    Guessing uniformly costs ``log(n_classes)`` per item; an epoch ten times worse
    than that on average is past recovering.
    """
    return 10 * max(1.0, math.log(n_classes))


#: The widest activation map one inference pass may hold, by device type. On a CPU
#: a pass runs fastest while its maps fit the caches: measured with WRN-10-1 and
#: WRN-10-4 on 8x8 and 32x32 images in bf16 channels-last (two cores), passes whose
#: widest map held 5-20 MB ran up to 1.35x faster than passes of one 32x32 image's
#: 72 transformations, and faster than larger ones, which spill out of the cache. A
#: GPU needs large passes to keep busy (kernel launches dominate small ones).
PASS_ACTIVATION_BYTES = {"cpu": 16 * 2**20, "default": 512 * 2**20}


def inference_pass_size(bytes_per_input: int, device: torch.device) -> int:
    """Inputs per inference pass whose widest activation maps take ``bytes_per_input``
    each: as many as :data:`PASS_ACTIVATION_BYTES` allows on ``device`` (at least one)."""
    budget = PASS_ACTIVATION_BYTES.get(device.type, PASS_ACTIVATION_BYTES["default"])
    return max(1, budget // max(1, int(bytes_per_input)))


def batch_bounds(n_items: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches covering ``n_items``.

    A trailing batch of a single item is merged into the one before it:
    BatchNorm cannot normalise one sample in training mode.
    """
    starts = list(range(0, n_items, batch_size))
    bounds = [(start, min(start + batch_size, n_items)) for start in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n_items)
        bounds.pop()
    return bounds


def progress(iterable, verbose, **kwargs):
    """A tqdm bar over ``iterable`` when ``verbose``, the bare iterable otherwise."""
    if not verbose:
        return iterable
    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def run_epoch(
    network, batch_loss, n_items, *, batch_size, optimizer, generator, device,
    mixed_precision=False, verbose=0, epoch=1,
):  # fmt: skip
    """One pass over ``n_items`` in a fresh random order; returns the mean loss.

    A loss that is not finite at the end of the epoch raises
    ``FloatingPointError`` (see :func:`check_finite_loss`).


    Parameters
    ----------
    network : torch.nn.Module
        Put in training mode; its optimiser is ``optimizer``.
    batch_loss : callable
        ``batch_loss(item_indices) -> loss``: the loss *summed* over the
        batch, with the indices a long tensor on ``device``.
    n_items : int
        Size of the (virtual) data set; the order is drawn from ``generator``.
    """
    network.train()
    order = torch.randperm(n_items, generator=generator).to(device)
    # Summed on the device: reading the loss every step would force a
    # device synchronisation per batch.
    total_loss = torch.zeros((), device=device)
    bounds = batch_bounds(n_items, batch_size)
    for start, stop in progress(bounds, verbose > 1, desc=f"epoch {epoch}", unit="batch"):
        with autocast(device, mixed_precision):
            loss = batch_loss(order[start:stop]).float()
        optimizer.zero_grad(set_to_none=True)
        (loss / (stop - start)).backward()
        optimizer.step()
        total_loss += loss.detach()
    mean_loss = total_loss.item() / n_items
    check_finite_loss(mean_loss, epoch, optimizer.param_groups[0]["lr"])
    return mean_loss


@torch.inference_mode()
def evaluate_loss(network, batch_loss, n_items, *, batch_size, device, mixed_precision=False):
    """Mean of ``batch_loss`` over ``n_items`` in order, in eval mode (held-out data)."""
    network.eval()
    total_loss = torch.zeros((), device=device)
    for start in range(0, n_items, batch_size):
        items = torch.arange(start, min(start + batch_size, n_items), device=device)
        with autocast(device, mixed_precision):
            total_loss += batch_loss(items).float()
    return total_loss.item() / n_items


def train_classifier(
    network,
    make_batch,
    n_items,
    *,
    epochs,
    batch_size,
    optimizer,
    generator,
    device,
    scheduler=None,
    validation=None,
    mixed_precision=False,
    verbose=0,
    description="training",
):
    """Minimise the cross-entropy of ``network`` on a self-labelled data set.

    Parameters
    ----------
    network : torch.nn.Module
        The classifier, already on ``device``.
    make_batch : callable
        ``make_batch(item_indices) -> (inputs, targets)``, with the indices a
        long tensor on ``device``; builds the batch on the device.
    n_items : int
        Size of the (virtual) data set; each epoch visits every item once in a
        fresh random order drawn from ``generator``.
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Stepped once per epoch.
    validation : tuple (make_batch, n_items), optional
        A held-out data set in the same form, whose mean loss is measured
        after every epoch.

    Returns
    -------
    history : list of dict
        ``{"epoch", "loss"}`` per epoch, the loss averaged over the items,
        and ``"validation_loss"`` with ``validation``.
    """
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

    def loss_of(make):
        def batch_loss(items):
            nonlocal loss_limit
            inputs, targets = make(items)
            logits = network(inputs).float()
            if loss_limit is None:
                loss_limit = chance_loss_limit(logits.shape[1])
            return loss_fn(logits, targets)

        return batch_loss

    history = []
    loss_limit = None  # chance_loss_limit of the number of classes, read off the first logits
    bar = progress(range(1, epochs + 1), verbose, desc=description, unit="epoch")
    for epoch in bar:
        record = {"epoch": epoch}
        record["loss"] = run_epoch(
            network, loss_of(make_batch), n_items, batch_size=batch_size, optimizer=optimizer,
            generator=generator, device=device, mixed_precision=mixed_precision,
            verbose=verbose, epoch=epoch,
        )  # fmt: skip
        check_finite_loss(record["loss"], epoch, optimizer.param_groups[0]["lr"], limit=loss_limit)
        if scheduler is not None:
            scheduler.step()
        if validation is not None:
            make_validation_batch, n_validation = validation
            record["validation_loss"] = evaluate_loss(
                network, loss_of(make_validation_batch), n_validation, batch_size=batch_size,
                device=device, mixed_precision=mixed_precision,
            )  # fmt: skip
        history.append(record)
        if verbose:
            bar.set_postfix({key: f"{value:.4f}" for key, value in record.items() if key != "epoch"})
    network.eval()
    return history
