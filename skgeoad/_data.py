"""Samples on their way to the device: resident when they fit, streamed when not.

A detector reads its (validated, scaled) samples in two ways: random batches
while it trains and consecutive chunks while it scores. :class:`DeviceData`
serves both from one of two places:

* **resident** (the fast path): the prepared tensor lives on the device, made
  once; a batch is an index into it;
* **streamed**: the raw rows stay in host memory; a batch is gathered there,
  copied to the device (from pinned memory, without blocking, on CUDA) and
  prepared there. Device memory is then bounded by the batch, not by
  ``len(X)``.

Preparation is elementwise per sample (scaling, reshaping, padding), so a
sample comes out bit for bit the same on either path, and scores do not
depend on which was taken.
"""

import numpy as np
import torch

from ._config import get_config


class DeviceData:
    """Validated rows, read as prepared tensors on ``device`` in batches.

    Parameters
    ----------
    rows : ndarray of shape (n_samples, n_features)
        The validated samples, in host memory.
    prepare : callable
        ``prepare(tensor) -> tensor``: maps a batch of raw rows (already on
        ``device``, in ``dtype``) to what the detector computes on. It must
        treat every sample on its own.
    device : torch.device
    dtype : torch.dtype
    resident : bool or None, default=None
        ``None`` decides from the size of the data and the
        ``device_data_bytes`` setting (:func:`skgeoad.set_config`).
    """

    def __init__(self, rows, prepare, device, dtype, resident=None):
        # Read-only (memmap) or negatively strided input is copied: torch takes neither.
        self._rows = torch.from_numpy(np.require(rows, requirements=["C", "W"]))
        self._prepare = prepare
        self.device, self.dtype = device, dtype
        if resident is None:
            itemsize = torch.empty((), dtype=dtype).element_size()
            resident = self._rows.numel() * itemsize <= get_config()["device_data_bytes"]
        self.resident = bool(resident)
        self._tensor = None
        self._tensor = self._prepare(self._raw(slice(None))) if self.resident else None

    def __len__(self):
        return len(self._rows)

    def _raw(self, index):
        """Raw rows ``index`` (a slice or a CPU index tensor) on the device, in ``dtype``."""
        batch = self._rows[index]
        if self.device.type == "cuda" and not self.resident:
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device, self.dtype)

    def __getitem__(self, index):
        """Prepared samples ``index`` (a slice or an index tensor, on any device)."""
        if self.resident:
            return self._tensor[index]
        if isinstance(index, torch.Tensor):
            index = index.cpu()
        return self._prepare(self._raw(index))

    def chunks(self, size):
        """Consecutive prepared chunks of at most ``size`` samples."""
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def map(self, prepare):
        """The same samples, each further mapped by ``prepare`` (on the device)."""
        first = self._prepare
        mapped = DeviceData.__new__(DeviceData)
        mapped._rows, mapped.device, mapped.dtype = self._rows, self.device, self.dtype
        mapped._prepare = lambda batch: prepare(first(batch))
        mapped.resident = self.resident
        mapped._tensor = prepare(self._tensor) if self.resident else None
        return mapped

    def subset(self, indices):
        """The samples ``indices`` (an integer array) as data of their own."""
        indices = np.asarray(indices)
        subset = DeviceData.__new__(DeviceData)
        subset._rows = self._rows[torch.from_numpy(indices)]
        subset._prepare, subset.device, subset.dtype = self._prepare, self.device, self.dtype
        subset.resident = self.resident
        subset._tensor = self._tensor[torch.as_tensor(indices, device=self.device)] if self.resident else None
        return subset

    def whole(self, size=4096):
        """All prepared samples as one tensor: on the device when resident, else in host memory."""
        if self.resident:
            return self._tensor
        return torch.cat([chunk.cpu() for chunk in self.chunks(size)])


__all__ = ["DeviceData"]
