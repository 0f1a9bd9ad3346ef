"""Running detectors on tasks: one record per detector x task x seed, in parallel."""

import inspect
import os
import time
import traceback

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .devices import assign_device, gpu_count, gpu_turns, worker_slot
from .peers import seeded


def _accepted_fit_params(detector, fit_params):
    """The subset of ``fit_params`` the detector's ``fit`` takes (e.g. sub-cluster labels)."""
    accepted = inspect.signature(detector.fit).parameters
    return {k: v for k, v in fit_params.items() if k in accepted}


def count_workers(n_jobs, n_runs):
    """Workers for ``n_runs`` runs with ``--n-jobs n_jobs``: never more than the runs.

    ``-1`` (or ``None``) means one per CPU core, as in joblib. ``"auto"`` means
    one per GPU where torch sees CUDA devices (runs on one GPU only queue for
    it), else one per CPU core: on a CPU, runs side by side on a core each
    finish sooner than the same runs one after the other on all the cores
    (the default digits benchmark on 2 cores: 124 s against 152 s), since a
    small network's kernels use a second thread poorly.

    Examples
    --------
    >>> count_workers(4, 10), count_workers(4, 2), count_workers(3, 0)
    (4, 2, 1)
    >>> count_workers(-1, 1000) == os.cpu_count()
    True
    """
    if n_jobs == "auto":
        import torch

        n_jobs = torch.cuda.device_count() if torch.cuda.is_available() else -1
    if n_jobs in (None, -1):
        n_jobs = os.cpu_count() or 1
    return max(1, min(n_jobs, n_runs or 1))


def run_one(task, name, detector, seed, n_threads=None, gpu_turn=None, all_rules=False):
    """Fit ``detector`` on ``task`` with ``seed``; never raises, errors go in the record.

    Parameters
    ----------
    all_rules : bool, default=False
        For a skgeoad detector with several scoring rules (``score_type``),
        also score the test set with every other rule, from the same fit and
        in one pass where the detector can: the record's ``"by_rule"`` maps
        each rule to its AUROC and AUPR (:func:`run_all` makes them records
        of their own, named ``"detector[rule]"``).
    n_threads : int, optional
        Torch and BLAS threads for this run, so parallel workers share the
        cores instead of each taking all of them.
    gpu_turn : int, optional
        The run's place among those that may take a GPU of their own (see
        :mod:`skgeoad.benchmark.devices`); ``None`` keeps the detector's device.
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
        from joblib import parallel_config
        from threadpoolctl import threadpool_limits

        if n_threads:
            torch.set_num_threads(n_threads)
        # A detector's own joblib calls (IsolationForest builds its trees
        # with one) stay in this worker, on threads: on a Dask or Ray worker
        # joblib would otherwise send them back to the cluster as nested
        # tasks, to queue behind the other runs (a 0.2 s fit took 30 s).
        with threadpool_limits(n_threads), parallel_config(backend="threading"):
            estimator = seeded(detector, seed)
            params = estimator.get_params(deep=False)
            device = params.get("device")
            n_gpus = gpu_count() if gpu_turn is not None else 0
            moved = assign_device(device, worker_slot(gpu_turn), n_gpus)
            if moved != device:
                estimator.set_params(device=moved)
            if task.image_shape is not None and params.get("image_shape", False) is None:
                shape = task.image_shape  # rows of your own images, or "tabular"
                estimator.set_params(image_shape=shape if isinstance(shape, str) else tuple(shape))
            record["params"] = {k: repr(v) for k, v in estimator.get_params(deep=False).items()}
            start = time.perf_counter()
            estimator.fit(task.X_train, **_accepted_fit_params(estimator, task.fit_params))
            fitted = time.perf_counter()
            record["fitted"] = _fitted_scalars(estimator)
            rules = getattr(estimator, "_score_rules", None) if all_rules else None
            if rules:
                by_rule = estimator._scores_by_rule(task.X_test)
                # The rule in force, resolved ("auto" is one of the rules by another name).
                record["rule"] = estimator._score_rule()
                scores = by_rule.pop(record["rule"])
            else:
                by_rule, scores = {}, estimator.score_samples(task.X_test)
            done = time.perf_counter()
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} scores are not finite.")
        n_normal = int(np.sum(task.is_normal))
        if n_normal in (0, len(task.is_normal)):
            raise ValueError(
                f"the test set holds {'no' if n_normal == 0 else 'only'} normal samples: "
                "AUROC is undefined."
            )
        auroc = float(roc_auc_score(task.is_normal, scores))
        aupr = float(average_precision_score(task.is_normal, scores))
        if not (np.isfinite(auroc) and np.isfinite(aupr)):
            raise ValueError(f"AUROC {auroc} / AUPR {aupr} is undefined.")
        if by_rule:
            record["by_rule"] = {rule: _rule_result(task, values) for rule, values in by_rule.items()}
        record.update(
            auroc=auroc,
            aupr=aupr,
            fit_seconds=fitted - start,
            score_seconds=done - fitted,
        )
    except Exception as exc:  # a failing run is reported, the others go on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=5)
    return record


def _fitted_scalars(estimator):
    """The public fitted attributes that are single numbers or strings: what the fit
    decided by itself (``epochs_``, ``latent_dim_``, ADGAN's ``critic_orientation_``,
    ``offset_``), kept with the result it led to.

    Examples
    --------
    >>> from sklearn.ensemble import IsolationForest
    >>> fitted = _fitted_scalars(IsolationForest(random_state=0).fit([[0.0], [1.0], [2.0]]))
    >>> fitted["n_features_in_"], fitted["max_samples_"]
    (1, 3)
    """
    return {
        name: value.item() if isinstance(value, np.generic) else value
        for name, value in vars(estimator).items()
        if name.endswith("_") and not name.startswith("_") and isinstance(value, (bool, int, float, str, np.generic))
    }


def _rule_result(task, scores):
    """AUROC and AUPR of another rule's ``scores``, or the error that stops them (that
    rule's record fails, not the run's)."""
    bad = int(np.sum(~np.isfinite(scores)))
    if bad:
        return {"error": f"ValueError: {bad} scores are not finite."}
    return {
        "auroc": float(roc_auc_score(task.is_normal, scores)),
        "aupr": float(average_precision_score(task.is_normal, scores)),
    }


def run_all(jobs, *, n_jobs=1, backend="loky", on_record=None, progress=True, all_rules=False):
    """Run ``(task, name, detector, seed)`` jobs, yielding records as they finish.

    Runs are independent, so they go through joblib: ``backend`` is any
    joblib backend (``"loky"`` processes, ``"threading"``, or ``"dask"`` /
    ``"ray"`` with a cluster connected, see
    :func:`skgeoad.benchmark.cluster.connect`). Each worker gets
    ``cpu_count // n_jobs`` torch/BLAS threads. Where there are GPUs, runs
    whose detector has ``device="auto"`` or ``"cuda"`` are spread over them
    round-robin, whatever the backend (:mod:`skgeoad.benchmark.devices`).
    With ``all_rules`` (see :func:`run_one`) a run of a detector with several
    rules gives one record per rule, the others named ``"detector[rule]"``.

    Examples
    --------
    >>> from skgeoad.benchmark import load_rows, make_detector, make_tasks
    >>> X_train, y_train, X_test, y_test = load_rows("digits")
    >>> tasks = make_tasks("digits", "one-vs-all", X_train, y_train, X_test, y_test, classes=[0])
    >>> (record,) = run_all([(tasks[0], "iforest", make_detector("iforest"), 0)], progress=False)
    >>> record["detector"], record["key"], bool(record["auroc"] > 0.9)
    ('iforest', 0, True)
    """
    from joblib import Parallel, delayed, parallel_config
    from tqdm.auto import tqdm

    jobs = list(jobs)
    n_workers = count_workers(n_jobs, len(jobs))
    n_threads = max(1, (os.cpu_count() or 1) // n_workers)
    turns = gpu_turns([detector.get_params(deep=False).get("device") for _, _, detector, _ in jobs])
    bar = tqdm(total=len(jobs), disable=not progress, desc="runs", leave=False)
    records = []
    if n_workers == 1 and backend in ("loky", "threading", "sequential"):
        results = (run_one(*job, gpu_turn=turn, all_rules=all_rules) for job, turn in zip(jobs, turns))
        _collect(results, records, bar, on_record)
    elif backend == "ray":
        # joblib's Ray back-end cannot hand results back as they finish
        # (joblib refuses return_as="generator*" for it, as for
        # "multiprocessing"); the Ray pool it is built on can.
        from ray.util.multiprocessing import Pool

        with Pool(processes=n_workers) as pool:
            calls = [(job, n_threads, turn, all_rules) for job, turn in zip(jobs, turns)]
            _collect(pool.imap_unordered(_run_packed, calls, chunksize=1), records, bar, on_record)
    else:
        # parallel_config, not Parallel(backend=...): only the former registers
        # joblib's external back-ends ("dask") on first use; Parallel looks the
        # name up among those already registered and calls "dask" invalid.
        with parallel_config(backend=backend):
            try:
                parallel = Parallel(n_jobs=n_workers, return_as="generator_unordered")
            except ValueError:  # "multiprocessing": results only once all are in
                parallel = Parallel(n_jobs=n_workers)
            results = parallel(
                delayed(run_one)(*job, n_threads=n_threads, gpu_turn=turn, all_rules=all_rules)
                for job, turn in zip(jobs, turns)
            )
            _collect(results, records, bar, on_record)
    bar.close()
    return records


def _run_packed(call):
    """:func:`run_one` for a pool's ``imap``, which passes one argument."""
    job, n_threads, turn, all_rules = call
    return run_one(*job, n_threads=n_threads, gpu_turn=turn, all_rules=all_rules)


def _collect(results, records, bar, on_record):
    for record in results:
        bar.update()
        for one in _split_by_rule(record):
            records.append(one)
            if on_record is not None:
                on_record(one)


def _split_by_rule(record):
    """A record with ``"by_rule"`` as one record per rule, the others named
    ``"detector[rule]"`` (same fit, same seconds).

    Examples
    --------
    >>> record = {"detector": "geometric", "auroc": 0.9, "by_rule": {"knn": {"auroc": 0.95}}}
    >>> [(r["detector"], r["auroc"]) for r in _split_by_rule(record)]
    [('geometric', 0.9), ('geometric[knn]', 0.95)]
    """
    by_rule = record.pop("by_rule", {})
    split = [record]
    for rule, values in by_rule.items():
        other = {key: value for key, value in record.items() if key not in ("auroc", "aupr")}
        other.update(detector=f"{record['detector']}[{rule}]", **values)
        if "params" in record:
            other["params"] = {**record["params"], "score_type": repr(rule)}
        if "rule" in record:
            other["rule"] = rule
        split.append(other)
    return split
