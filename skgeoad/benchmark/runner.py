"""Running detectors on tasks: one record per detector x task x seed, in parallel."""

import inspect
import os
import time
import traceback

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .peers import seeded


def _accepted_fit_params(detector, fit_params):
    """The subset of ``fit_params`` the detector's ``fit`` takes (e.g. sub-cluster labels)."""
    accepted = inspect.signature(detector.fit).parameters
    return {k: v for k, v in fit_params.items() if k in accepted}


def run_one(task, name, detector, seed, n_threads=None):
    """Fit ``detector`` on ``task`` with ``seed``; never raises, errors go in the record.

    Parameters
    ----------
    n_threads : int, optional
        Torch and BLAS threads for this run, so parallel workers share the
        cores instead of each taking all of them.
    """
    record = {
        "dataset": task.dataset,
        "protocol": task.protocol,
        "key": task.key,
        "detector": name,
        "seed": seed,
        "n_train": len(task.X_train),
        "n_test": len(task.X_test),
        **task.info,
    }
    try:
        import torch
        from threadpoolctl import threadpool_limits

        if n_threads:
            torch.set_num_threads(n_threads)
        with threadpool_limits(n_threads):
            estimator = seeded(detector, seed)
            record["params"] = {k: repr(v) for k, v in estimator.get_params(deep=False).items()}
            start = time.perf_counter()
            estimator.fit(task.X_train, **_accepted_fit_params(estimator, task.fit_params))
            fitted = time.perf_counter()
            scores = estimator.score_samples(task.X_test)
            done = time.perf_counter()
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} scores are not finite.")
        record.update(
            auroc=float(roc_auc_score(task.is_normal, scores)),
            aupr=float(average_precision_score(task.is_normal, scores)),
            fit_seconds=fitted - start,
            score_seconds=done - fitted,
        )
    except Exception as exc:  # a failing run is reported, the others go on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=5)
    return record


def run_all(jobs, *, n_jobs=1, backend="loky", on_record=None, progress=True):
    """Run ``(task, name, detector, seed)`` jobs, yielding records as they finish.

    Runs are independent, so they go through joblib: ``backend`` is any
    joblib backend (``"loky"`` processes, ``"threading"``, or ``"dask"`` /
    ``"ray"`` once their joblib integration is registered). Each worker gets
    ``cpu_count // n_jobs`` torch/BLAS threads.

    Examples
    --------
    >>> from skgeoad.benchmark import load_rows, make_detector, make_tasks
    >>> X_train, y_train, X_test, y_test = load_rows("digits")
    >>> tasks = make_tasks("digits", "one-vs-all", X_train, y_train, X_test, y_test, classes=[0])
    >>> (record,) = run_all([(tasks[0], "iforest", make_detector("iforest"), 0)], progress=False)
    >>> record["detector"], record["key"], bool(record["auroc"] > 0.9)
    ('iforest', 0, True)
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    jobs = list(jobs)
    n_workers = len(jobs) if n_jobs in (None, -1) else max(1, min(n_jobs, len(jobs) or 1))
    n_threads = max(1, (os.cpu_count() or 1) // n_workers)
    bar = tqdm(total=len(jobs), disable=not progress, desc="runs", leave=False)
    records = []
    if n_workers == 1 and backend in ("loky", "threading", "sequential"):
        results = (run_one(*job, n_threads=None) for job in jobs)
    else:
        results = Parallel(n_jobs=n_workers, backend=backend, return_as="generator_unordered")(
            delayed(run_one)(*job, n_threads=n_threads) for job in jobs
        )
    for record in results:
        records.append(record)
        bar.update()
        if on_record is not None:
            on_record(record)
    bar.close()
    return records
