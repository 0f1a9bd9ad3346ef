"""Connecting the benchmark's runs to a Dask or Ray cluster, and leaving it tidy.

joblib sends the runs wherever its back-end points; this module starts the
cluster that back-end needs (or joins one at an address) and closes what it
started, however the benchmark ends: finished, failed or interrupted.
"""

import logging
from contextlib import contextmanager

#: Back-ends that need a cluster; the others are joblib's own.
CLUSTER_BACKENDS = ("dask", "ray")

#: Dask configuration for the workers a local cluster starts. Dask's nannies
#: set ``MALLOC_TRIM_THRESHOLD_=65536`` in their workers' environment; any
#: value there also stops glibc from adapting its mmap threshold, so every
#: tensor over 128 KiB is a fresh mmap and page faults: torch ran 4 to 6 times
#: slower than under loky (measured: a small conv loop 0.61 s against 0.09 s).
#: ``None`` leaves the variable unset, as in any other process.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}

#: How long joining a cluster at ``scheduler`` may take before it is reported.
CONNECT_TIMEOUT = "20s"

#: Seconds to wait for a Ray cluster's ``host:port`` to accept a connection.
PROBE_TIMEOUT = 10


@contextmanager
def connect(backend, scheduler=None, *, n_workers=1):
    """Start or join the cluster of joblib back-end ``backend`` for the ``with`` block.

    Without ``scheduler``, a local cluster of ``n_workers`` worker processes
    is started, each running one run at a time (a run sets its own torch
    and BLAS threads, ``cores // n_workers``, as with loky), and shut down
    at the end of the block. With ``scheduler``, the cluster at that address
    is joined and only this connection is closed at the end: the cluster and
    its workers are someone else's.

    For any other back-end (``"loky"``, ``"threading"``...) nothing happens.

    Parameters
    ----------
    backend : str
        ``"dask"`` (``dask.distributed``) or ``"ray"``; others are joblib's own.
    scheduler : str, optional
        A Dask scheduler (``"tcp://host:8786"``) or a Ray cluster
        (``"host:6379"``, ``"auto"``, ``"ray://host:10001"``) to join.
    n_workers : int, default=1
        Worker processes of a local cluster.

    Yields
    ------
    client : distributed.Client, the ``ray`` module or None

    Raises
    ------
    ImportError
        When the back-end's package is missing (its ``name`` says which).
    OSError
        When nothing answers at ``scheduler`` (``ConnectionError`` and
        ``TimeoutError`` are both ``OSError``).

    Examples
    --------
    >>> with connect("loky") as client:
    ...     print(client)
    None
    """
    if backend == "dask":
        with _dask(scheduler, n_workers) as client:
            yield client
    elif backend == "ray":
        with _ray(scheduler, n_workers) as client:
            yield client
    else:
        yield None


@contextmanager
def _dask(scheduler, n_workers):
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        cluster = None
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    else:
        # Processes, not threads: torch fits hold the GIL in places, and a
        # crashing run must not take the others down. One thread per worker
        # is one run at a time; the run sets its own torch threads.
        with dask.config.set(WORKER_ENVIRON):
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR,  # any free port
            )  # fmt: skip
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def _ray(scheduler, n_workers):
    import ray
    from ray.util.joblib import register_ray

    if ray.is_initialized():  # a caller's own connection: use it, leave it open
        started = False
    elif scheduler:
        _probe(scheduler)
        ray.init(address=scheduler, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    else:
        ray.init(
            num_cpus=n_workers, include_dashboard=False, logging_level=logging.WARNING,
            log_to_driver=False,
        )  # fmt: skip
        started = True
    try:
        register_ray()
        yield ray
    finally:
        if started:
            # Stops a local Ray; from a joined cluster it only disconnects.
            ray.shutdown()


def _probe(address):
    """Raise ``ConnectionError`` unless a Ray ``host:port`` address accepts a TCP connection.

    ``ray.init`` retries an address where nothing listens for ever; this
    fails at once instead. ``"auto"``, ``"local"`` and ``"ray://..."``
    addresses are left to Ray (the last has its own timeout).

    Raises
    ------
    ConnectionError
        When nothing answers at ``address`` within :data:`PROBE_TIMEOUT` seconds.
    """
    import socket

    if "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        return  # not host:port; Ray says what is wrong
    try:
        socket.create_connection((host.strip("[]"), port), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        raise ConnectionError(
            f"nothing answers at {address} ({exc.strerror or type(exc).__name__})"
        ) from None
