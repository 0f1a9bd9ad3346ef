"""One GPU per parallel run: which device each benchmark run fits on.

A detector left at ``device="auto"`` takes ``cuda:0``, so on a 4-GPU machine
four parallel runs would share one GPU and leave three idle. The runner
numbers the runs that may move (GPU *turns*, counted in the parent) and each
run, in its worker, takes GPU ``slot % n_gpus`` of the GPUs *that worker*
sees: its Dask worker's index when it runs on a Dask worker with an integer
name (a ``LocalCluster``'s workers are 0..n-1, so each keeps one GPU for
good), else its turn. Counting the GPUs in the worker, not in the parent,
keeps this right on a cluster whose nodes have other GPUs than the machine
that submits, and under ``CUDA_VISIBLE_DEVICES`` set per worker.
"""

import sys

#: ``device`` values a run may be moved from: anything else (``"cpu"``,
#: ``"cuda:1"``, ``--set geometric.device=...``) was chosen on purpose and is kept.
MOVABLE_DEVICES = ("auto", "cuda")


def movable(device):
    """Whether a detector's ``device`` parameter lets the runner pick its GPU.

    Examples
    --------
    >>> movable("auto"), movable("cuda"), movable("cuda:1"), movable("cpu"), movable(None)
    (True, True, False, False, False)
    """
    return isinstance(device, str) and device in MOVABLE_DEVICES


def gpu_turns(devices):
    """Number the runs that may move to a GPU: 0, 1, 2... in order, ``None`` for the others.

    Runs of detectors without a GPU (``None``: no ``device`` parameter) or
    with an explicit device do not use up a GPU's turn, so interleaving
    ``iforest`` and ``geometric`` runs still spreads the geometric ones
    over every GPU.

    Examples
    --------
    >>> gpu_turns(["auto", None, "auto", "cpu", "cuda"])
    [0, None, 1, None, 2]
    """
    turns, turn = [], 0
    for device in devices:
        turns.append(turn if movable(device) else None)
        turn += movable(device)
    return turns


def assign_device(device, slot, n_gpus):
    """The device a run fits on: ``cuda:{slot % n_gpus}`` when it may move and there are GPUs.

    Parameters
    ----------
    device : str or None
        The detector's ``device`` parameter (``None``: it has none).
    slot : int or None
        The run's worker index or GPU turn (``None``: the run may not move).
    n_gpus : int
        GPUs visible to the worker, ``torch.cuda.device_count()``.

    Returns
    -------
    str or None
        ``device`` itself unless it was moved.

    Examples
    --------
    >>> [assign_device("auto", slot, n_gpus=4) for slot in range(6)]
    ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3', 'cuda:0', 'cuda:1']
    >>> assign_device("auto", 3, n_gpus=0), assign_device("cuda:1", 0, n_gpus=4)
    ('auto', 'cuda:1')
    """
    if slot is None or n_gpus < 1 or not movable(device):
        return device
    return f"cuda:{slot % n_gpus}"


def worker_slot(turn):
    """This worker's slot: its Dask worker index when it has one, else the run's ``turn``."""
    if turn is None:
        return None
    if "distributed" in sys.modules:  # only a Dask worker has it loaded; never import it here
        from distributed import get_worker

        try:
            name = get_worker().name
        except ValueError:  # not inside a Dask worker
            name = None
        if isinstance(name, int):
            return name
    return turn


def gpu_count():
    """GPUs this process sees.

    ``torch.cuda.device_count`` asks NVML, so the parent stays able to fork
    workers that use CUDA (``torch.cuda.is_available()`` would initialise it).
    """
    import torch

    return torch.cuda.device_count()
