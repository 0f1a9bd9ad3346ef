"""The ``skgeoad-benchmark`` command."""

import argparse
import ast
import json
import sys
import time
from pathlib import Path

from .peers import DETECTORS, make_detector
from .protocols import DATASETS, PROTOCOLS, load_rows, make_tasks, stratified_subset
from .report import format_tables, plot_results, write_results
from .runner import run_all


def _int_list(text):
    return [int(item) for item in text.split(",") if item.strip()] if text else None


def parse_settings(items, detectors):
    """``["geometric.widen_factor=2", ...]`` -> ``{"geometric": {"widen_factor": 2}, ...}``."""
    settings = {name: {} for name in detectors}
    for item in items:
        key, sep, raw = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot or name not in settings:
            raise SystemExit(f"--set expects DETECTOR.PARAM=VALUE with DETECTOR in {detectors}, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare string: --set geometric.device=cpu
        settings[name][param] = value
    return settings


def build_parser():
    parser = argparse.ArgumentParser(
        prog="skgeoad-benchmark",
        description=(
            "Anomaly detection benchmark on the papers' protocols: AUROC per task, "
            "detectors side by side. Results go to OUT/results.json, results.md and results.png."
        ),
    )
    parser.add_argument("--dataset", default="digits",
                        help=f"comma-separated, from {sorted(DATASETS)} (default: digits)")
    parser.add_argument("--data-home", default=None, help="folder with the data sets' files ($SKGEOAD_DATA)")
    parser.add_argument("--protocol", default="one-vs-all", choices=PROTOCOLS)
    parser.add_argument("--detectors", default="geometric,iforest,ocsvm",
                        help=f"comma-separated, from {sorted(DETECTORS)}")
    parser.add_argument("--classes", type=_int_list, default=None,
                        help="normal classes to try, comma-separated (default: all)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="training images per normal class (fixed-seed subsample)")
    parser.add_argument("--n-test", type=int, default=None, help="test images (stratified, fixed seed)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per task, seeds 0..N-1")
    parser.add_argument("--contamination", type=float, default=0.05,
                        help="contaminated protocol: share of anomalies in training (default 0.05)")
    parser.add_argument("--anomaly-classes", type=_int_list, default=None,
                        help="multi-normal protocol: the anomaly classes (default: upper half)")
    parser.add_argument("--max-normal-classes", type=int, default=5,
                        help="multi-normal protocol: k = 1..N normal classes (default 5)")
    parser.add_argument("--set", action="append", default=[], metavar="DETECTOR.PARAM=VALUE",
                        help="detector parameter, e.g. geometric.widen_factor=2 (repeatable)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel runs (default 1)")
    parser.add_argument("--backend", default="loky",
                        choices=["loky", "threading", "multiprocessing", "dask", "ray"],
                        help="joblib backend; dask and ray need their packages (see --scheduler)")
    parser.add_argument("--scheduler", default=None,
                        help="dask scheduler / ray cluster address (default: a local one)")
    parser.add_argument("--out", default="benchmark_results", help="output folder (default: benchmark_results)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished runs of OUT/results.json and run only the rest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser  # fmt: skip


def _connect_cluster(backend, scheduler, parser):
    """Register joblib's dask or ray backend; return the client to keep alive."""
    try:
        if backend == "dask":
            from dask.distributed import Client

            return Client(scheduler) if scheduler else Client()
        if backend == "ray":
            import ray
            from ray.util.joblib import register_ray

            register_ray()
            ray.init(address=scheduler)
            return ray
    except ImportError as exc:
        parser.error(f"--backend {backend} needs {exc.name}: pip install 'dask[distributed]' or 'ray'")
    return None


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {sorted(DETECTORS)}")
    settings = parse_settings(args.set, names)
    detectors = {name: make_detector(name, settings[name]) for name in names}
    dataset_names = [d.strip() for d in args.dataset.split(",") if d.strip()]
    seeds = list(range(args.seeds))

    budget = {
        "datasets": dataset_names, "protocol": args.protocol, "classes": args.classes,
        "max_train": args.max_train, "n_test": args.n_test, "seeds": args.seeds,
        "contamination": args.contamination if args.protocol == "contaminated" else None,
        "settings": settings, "n_jobs": args.n_jobs, "backend": args.backend,
    }  # fmt: skip
    print(f"budget: {json.dumps(budget)}", flush=True)

    out = Path(args.out)
    records = []
    if args.resume and (out / "results.json").exists():
        records = [r for r in json.loads((out / "results.json").read_text())["records"] if "error" not in r]
    done = {(r["dataset"], r["protocol"], r["key"], r["detector"], r["seed"]) for r in records}

    jobs = []
    for dataset in dataset_names:
        try:
            X_train, y_train, X_test, y_test = load_rows(dataset, args.data_home)
        except (OSError, ImportError, ValueError) as exc:  # reported, the other data sets go on
            print(f"{dataset}: {exc}", file=sys.stderr)
            records += [
                {"dataset": dataset, "protocol": args.protocol, "key": None, "detector": name,
                 "seed": None, "error": f"{type(exc).__name__}: {exc}"}
                for name in names
            ]  # fmt: skip
            continue
        kept = stratified_subset(y_test, args.n_test)
        tasks = make_tasks(
            dataset, args.protocol, X_train, y_train, X_test[kept], y_test[kept],
            classes=args.classes, max_train=args.max_train, contamination=args.contamination,
            anomaly_classes=args.anomaly_classes, max_normal_classes=args.max_normal_classes,
        )  # fmt: skip
        jobs += [
            (task, name, detectors[name], seed)
            for task in tasks for seed in seeds for name in names
            if (task.dataset, task.protocol, task.key, name, seed) not in done
        ]  # fmt: skip

    def save(record):
        records.append(record)
        write_results(out, budget, records)  # as results come: an interruption loses nothing

    client = _connect_cluster(args.backend, args.scheduler, parser)
    start = time.perf_counter()
    run_all(jobs, n_jobs=args.n_jobs, backend=args.backend, on_record=save, progress=not args.quiet)
    wall = time.perf_counter() - start
    budget["wall_seconds"] = round(wall, 1)
    write_results(out, budget, records)
    figure = plot_results(records, out / "results.png")
    print(format_tables(records))
    print(f"wall time: {wall:.0f} s; results in {out}/" + (f" (figure: {figure.name})" if figure else ""))
    del client
    return 1 if any("error" in r for r in records) else 0
