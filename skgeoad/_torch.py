"""Torch plumbing shared by the detectors: devices, seeding, batching, training.

Nothing here knows about a particular detector or network architecture.
"""

import contextlib
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm


def resolve_device(device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    if not device_available(resolved):
        raise ValueError(f"device={device!r} was requested but is not available on this machine.")
    return resolved


def device_available(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError):
        return False
    return True


def fallback_device(saved_device: torch.device) -> torch.device:
    """The device an unpickled model lives on: where it was fitted if possible, else the CPU."""
    if device_available(saved_device):
        return saved_device
    warnings.warn(
        f"This model was fitted on {saved_device}, which is not available here; "
        "it was loaded on the CPU instead.",
        UserWarning,
        stacklevel=3,
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
    ``reset_parameters(generator)``, and moved to ``device``: the same seed gives
    the same weights on every device.
    """
    with torch.device("meta"):
        module = factory()
    module.to_empty(device="cpu")
    module.reset_parameters(generator)
    return module.to(device, dtype)


def use_mixed_precision(mixed_precision, device: torch.device) -> bool:
    """Resolve ``mixed_precision="auto"``: bf16 on CUDA devices that support it."""
    if mixed_precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bool(mixed_precision)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


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
    mixed_precision=False, verbose=0, description="epoch",
):  # fmt: skip
    """One pass over ``n_items`` in a fresh random order; returns the mean loss.

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
    for start, stop in progress(bounds, verbose > 1, desc=description, unit="batch"):
        with autocast(device, mixed_precision):
            loss = batch_loss(order[start:stop]).float()
        optimizer.zero_grad(set_to_none=True)
        (loss / (stop - start)).backward()
        optimizer.step()
        total_loss += loss.detach()
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

    Returns
    -------
    history : list of dict
        ``{"epoch", "loss"}`` per epoch, the loss averaged over the items.
    """
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

    def batch_loss(items):
        inputs, targets = make_batch(items)
        return loss_fn(network(inputs).float(), targets)

    history = []
    bar = progress(range(epochs), verbose, desc=description, unit="epoch")
    for epoch in bar:
        epoch_loss = run_epoch(
            network, batch_loss, n_items, batch_size=batch_size, optimizer=optimizer,
            generator=generator, device=device, mixed_precision=mixed_precision,
            verbose=verbose, description=f"epoch {epoch + 1}",
        )  # fmt: skip
        if scheduler is not None:
            scheduler.step()
        history.append({"epoch": epoch + 1, "loss": epoch_loss})
        if verbose:
            bar.set_postfix(loss=f"{epoch_loss:.4f}")
    network.eval()
    return history
