"""The bare torch loop every throughput comparison measures a detector against.

A bare loop runs a network's training steps and inference passes on batches
that already sit on the device, in a given configuration (bf16 autocast or
float32, channels-last or NCHW), with nothing else: no data handling, no
transformations, no scores. A detector doing the same network work in the
same configuration can at best match it; ``bare seconds / detector seconds``
is the detector's efficiency (1.0: no overhead).

Used by ``throughput.py`` and ``gpu_check.py``; not part of the package.
"""

import contextlib
import math
import time

import torch


class BareLoop:
    """Training steps and inference passes of bare networks in one configuration.

    Parameters
    ----------
    device : torch.device or str
    bf16 : bool
        Run the networks under bf16 autocast (the precision policy's part: the
        losses are taken in float32).
    channels_last : bool
        Networks and image batches in channels-last memory, else NCHW.
    """

    def __init__(self, device, bf16, channels_last):
        self.device = torch.device(device)
        self.bf16, self.channels_last = bool(bf16), bool(channels_last)
        self._format = torch.channels_last if channels_last else torch.contiguous_format

    def describe(self):
        precision = "bf16 autocast" if self.bf16 else "float32"
        return f"{precision}, {'channels-last' if self.channels_last else 'NCHW'}"

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def network(self, module):
        """``module`` on the device, in the loop's memory layout."""
        return module.to(self.device, memory_format=self._format)

    def batch(self, *shape):
        """A random batch of ``shape`` on the device (4-D batches in the loop's layout)."""
        batch = torch.randn(*shape, device=self.device)
        if batch.dim() == 4:
            batch = batch.contiguous(memory_format=self._format)
        return batch

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, function, *args):
        """Seconds ``function(*args)`` takes, the device's queue drained on both sides."""
        self.synchronize()
        start = time.perf_counter()
        function(*args)
        self.synchronize()
        return time.perf_counter() - start

    def train(self, network, optimizer, loss_of, steps):
        """Seconds of ``steps`` optimisation steps of ``loss_of(network)`` (a float32 loss)."""
        network.train()

        def run(n):
            for _ in range(n):
                with self.autocast():
                    loss = loss_of(network)
                optimizer.zero_grad(set_to_none=True)
                loss.float().backward()
                optimizer.step()

        run(2)  # warm-up: kernels are picked on the first passes
        return self.timed(run, steps)

    def infer(self, forward, n_items, pass_size):
        """Seconds of inference over ``n_items`` in passes of ``pass_size`` (the last one
        shorter): ``forward(n)`` computes one pass of ``n`` items."""
        sizes = [pass_size] * (n_items // pass_size) + ([n_items % pass_size] if n_items % pass_size else [])

        def run(passes):
            with torch.inference_mode(), self.autocast():
                for size in passes:
                    forward(size)

        run(sizes[:1])
        return self.timed(run, sizes)


def steps(n_items, batch_size):
    """Optimisation steps of an epoch over ``n_items`` (a trailing single item joins the batch before)."""
    n_steps = math.ceil(n_items / batch_size)
    return n_steps - 1 if n_steps > 1 and n_items % batch_size == 1 else n_steps
