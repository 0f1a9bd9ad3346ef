"""The ``skgeoad-benchmark`` command.

The whole command line is checked before the first run starts: a typo
found only when a run fails, or an output folder found unwritable once the
first result is in, costs the hours spent so far. A mistake is reported the
way argparse reports its own, one line on stderr and exit status 2.
"""

import argparse
import ast
import importlib.util
import json
import pickle
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from .cluster import CLUSTER_BACKENDS, connect
from .peers import DETECTORS, _did_you_mean, check_installed, make_detector
from .protocols import DATASETS, PROTOCOLS, is_path, load_rows, make_tasks, stratified_subset
from .report import format_tables, plot_results, write_results
from .runner import count_workers, run_all

#: What identifies a run in ``results.json``: ``--resume`` skips these.
_RUN_ID = ("dataset", "protocol", "key", "detector", "seed")


class UsageError(Exception):
    """A mistake on the command line found after parsing; reported like argparse's own."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser with its errors on one line: a dozen lines of usage hid them."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# -- argument types: argparse reports their errors as "argument --flag: ..." --


def _integer(minimum, *, or_minus_one=False, or_auto=False):
    """An argparse type: an integer of at least ``minimum`` (or -1, joblib's "all"; or "auto")."""
    expected = f"an integer >= {minimum}" + (" or -1" if or_minus_one else "") + (" or auto" if or_auto else "")

    def parse(text):
        if or_auto and text == "auto":
            return text
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not (value >= minimum or (or_minus_one and value == -1)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def _fraction(text):
    """An argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:  # also rules out nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _comma_list(text, what):
    items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
    return items


def _names(choices, what):
    """An argparse type: comma-separated names, each one of ``choices``."""

    def parse(text):
        names = _comma_list(text, f"{what} names")
        for name in names:
            if name not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {name!r}{_did_you_mean(name, choices)}; "
                    f"choose from {', '.join(sorted(choices))}"
                )
        return names

    return parse


def _class_list(text):
    """An argparse type: comma-separated classes, integers or names (class folders).

    Only an integer written plainly becomes an ``int``: ``"01"`` stays text,
    to match a class folder named ``01`` (see :func:`_resolve_classes`).
    """
    names = _comma_list(text, "classes")
    return [int(name) if str(_as_int(name)) == name else name for name in names]


def _as_int(value):
    """``value`` (a label or a class as typed) as an integer, or None when it is not one."""
    text = str(value)
    return int(text) if text.lstrip("-").isdigit() else None


def _datasets(text):
    """An argparse type: comma-separated known data sets or paths of your own data."""
    names = _comma_list(text, "data set names")
    for name in names:
        if not is_path(name) and name not in DATASETS:
            raise argparse.ArgumentTypeError(
                f"unknown data set {name!r}{_did_you_mean(name, DATASETS)}; choose from "
                f"{', '.join(sorted(DATASETS))}, or give the path of a .npz file or of a folder "
                "of images (one sub-folder per class)"
            )
    return names


def _image_shape(text):
    """An argparse type: ``HxW``, ``HxWxC`` or ``tabular``."""
    if text.strip().lower() == "tabular":
        return "tabular"
    try:
        shape = tuple(int(side) for side in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH, HEIGHTxWIDTHxCHANNELS or tabular, got {text!r}"
        )
    return shape


def build_parser():
    parser = _Parser(
        prog="skgeoad-benchmark",
        description=(
            "Anomaly detection benchmark on the papers' protocols: AUROC per task, "
            "detectors side by side. Results go to OUT/results.json, results.md and results.png."
        ),
        epilog=(
            "Every argument is checked before the first run. Exit status: 0 all runs succeeded, "
            "1 some failed (their errors are in the results), 2 a mistake on the command line "
            "(nothing was run), 130 interrupted (rerun with --resume)."
        ),
    )
    # fmt: off
    parser.add_argument("--dataset", default=["digits"], type=_datasets,
                        help=f"comma-separated, from {sorted(DATASETS)}, or paths of your own data: "
                             "a .npz file (X_train, y_train, X_test, y_test or X, y) or a folder of "
                             "images with one sub-folder per class (default: digits)")
    parser.add_argument("--image-shape", type=_image_shape, default=None, metavar="HxW[xC]|tabular",
                        help="your own data: flat .npz rows are images of this shape; a folder's "
                             "images are resized to it (C=1 grey, C=3 RGB; default: the most "
                             "common size, RGB if any image has colour); 'tabular': the rows "
                             "are plain features, not images (else 64, 81... features read as "
                             "8x8, 9x9...)")
    parser.add_argument("--data-home", default=None, help="folder with the data sets' files ($SKGEOAD_DATA)")
    parser.add_argument("--protocol", default="one-vs-all", choices=PROTOCOLS)
    parser.add_argument("--detectors", default="geometric,iforest,ocsvm",
                        type=_names(DETECTORS, "detector"),
                        help=f"comma-separated, from {sorted(DETECTORS)}")
    parser.add_argument("--classes", type=_class_list, default=None,
                        help="normal classes to try, comma-separated ids or class-folder names "
                             "(default: all; not multi-normal)")
    parser.add_argument("--max-train", type=_integer(1), default=None,
                        help="training images per normal class (fixed-seed subsample)")
    parser.add_argument("--n-test", type=_integer(1), default=None,
                        help="test images (stratified, fixed seed; at least one per class)")
    parser.add_argument("--seeds", type=_integer(1), default=1, help="runs per task, seeds 0..N-1")
    parser.add_argument("--contamination", type=_fraction, default=0.05,
                        help="contaminated protocol: share of anomalies in training, in [0, 1) "
                             "(default 0.05)")
    parser.add_argument("--anomaly-classes", type=_class_list, default=None,
                        help="multi-normal protocol: the anomaly classes (default: upper half)")
    parser.add_argument("--max-normal-classes", type=_integer(1), default=5,
                        help="multi-normal protocol: k = 1..N normal classes (default 5)")
    parser.add_argument("--all-rules", action="store_true",
                        help="skgeoad detectors with several scoring rules (score_type) also "
                             "score with the others, from the same fit: columns DETECTOR[RULE]")
    parser.add_argument("--set", action="append", default=[], metavar="DETECTOR.PARAM=VALUE",
                        help="detector parameter, e.g. geometric.widen_factor=2 (repeatable)")
    parser.add_argument("--n-jobs", type=_integer(1, or_minus_one=True, or_auto=True), default="auto",
                        help="parallel runs: 'auto' (default) one per GPU where there are GPUs, "
                             "else one per CPU core, each on a core of its own; -1 one per core; "
                             "1 one after the other, on all the cores")
    parser.add_argument("--backend", default="loky",
                        choices=["loky", "threading", "multiprocessing", "dask", "ray"],
                        help="joblib backend; dask and ray need their packages (see --scheduler)")
    parser.add_argument("--scheduler", default=None,
                        help="dask scheduler / ray cluster address (default: a local one)")
    parser.add_argument("--out", default="benchmark_results", help="output folder (default: benchmark_results)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished runs of OUT/results.json and run only the rest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # fmt: on
    return parser


# -- checks that need no data ---------------------------------------------------


def _check_options(args):
    """Reject options the protocol or backend chosen would silently ignore."""
    if args.protocol == "multi-normal" and args.classes is not None:
        raise UsageError(
            "--classes does not apply to --protocol multi-normal: its normal classes are "
            "the first k (see --max-normal-classes and --anomaly-classes)"
        )
    if args.protocol != "multi-normal" and args.anomaly_classes is not None:
        raise UsageError("--anomaly-classes applies to --protocol multi-normal only")
    if args.scheduler is not None and args.backend not in CLUSTER_BACKENDS:
        raise UsageError("--scheduler needs --backend dask or ray")
    module = {"dask": "distributed", "ray": "ray"}.get(args.backend)
    if module is not None and importlib.util.find_spec(module) is None:
        raise UsageError(_missing_backend(args.backend, module))
    if args.data_home is not None and not Path(args.data_home).is_dir():
        raise UsageError(f"--data-home {args.data_home}: no such folder")
    if args.image_shape is not None and not any(is_path(name) for name in args.dataset):
        raise UsageError("--image-shape applies to your own data (--dataset PATH) only")


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string: --set geometric.device=cpu


def parse_settings(items, detectors):
    """``["geometric.widen_factor=2", ...]`` -> ``{"geometric": {"widen_factor": 2}, ...}``.

    Raises ``UsageError`` for an item not of the form DETECTOR.PARAM=VALUE or
    whose DETECTOR is not one of ``detectors``; the parameters themselves are
    checked by :func:`make_detector`.
    """
    settings = {name: {} for name in detectors}
    for item in items:
        key, sep, raw = item.partition("=")
        name, dot, param = key.partition(".")
        if not (sep and dot and name and param):
            raise UsageError(f"--set expects DETECTOR.PARAM=VALUE, got {item!r}")
        if name not in settings:
            why = (
                "is not in --detectors"
                if name in DETECTORS
                else f"is not a detector{_did_you_mean(name, DETECTORS)}"
            )
            raise UsageError(
                f"--set {item}: {name!r} {why}; --detectors are {', '.join(detectors)}"
            )
        settings[name][param] = _literal(raw)
    return settings


def _build_detectors(settings):
    """The detectors, their packages present and their parameters checked."""
    detectors = {}
    for name, params in settings.items():
        try:
            check_installed(name)
        except ImportError as exc:
            raise UsageError(f"--detectors {name}: {exc}") from None
        try:
            detectors[name] = make_detector(name, params)
        except (TypeError, ValueError) as exc:  # scikit-learn's InvalidParameterError is both
            raise UsageError(f"--set: {exc}") from None
    return detectors


def _finished_records(path):
    """The runs of an earlier ``results.json`` that finished without error.

    No file yet is fine (the first try of a job always run with
    ``--resume``); a file that cannot be read, or is not ours, is a mistake
    to report rather than a reason to start afresh and overwrite it.
    """
    if not path.exists():
        print(f"--resume: no {path} yet, running everything", file=sys.stderr)
        return []
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--resume: cannot read {path} ({exc.strerror})") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"--resume: {path} is not valid JSON ({exc})") from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and set(_RUN_ID) <= r.keys() for r in records
    ):
        raise UsageError(
            f"--resume: {path} is not a skgeoad-benchmark results file (no list of run records)"
        )
    return [r for r in records if "error" not in r]


def _check_writable(out):
    """Create ``out`` and write a file there: a bad ``--out`` fails now, not after the first run."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: that is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror})") from None


# -- checks against the data ----------------------------------------------------


def _load(dataset, args):
    try:
        return load_rows(dataset, args.data_home, image_shape=args.image_shape, return_shape=True)
    except (OSError, ImportError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the loader wrote
        # Your own data's errors start with the path already.
        named = is_path(dataset) and message.startswith(str(Path(dataset)))
        flag = "--dataset" if named else f"--dataset {dataset}"
        raise UsageError(f"{flag}: {message}") from None


def _resolve_classes(flag, classes, labels, dataset):
    """The labels that ``classes`` name, all checked.

    A class as typed matches the label whose text it is (``3`` a folder
    named 3, ``01`` a folder named 01); failing that, an integer matches
    the one label of that value (``01`` the integer label 1, ``1`` a
    folder named 01).
    """
    by_name = {str(label): label for label in labels}
    resolved, missing = [], []
    for c in classes:
        if str(c) in by_name:
            resolved.append(by_name[str(c)])
            continue
        value = _as_int(c)
        same = [label for label in labels if value is not None and _as_int(label) == value]
        if len(same) == 1:
            resolved.append(same[0])
        else:
            missing.append(c)
    if missing:
        raise UsageError(
            f"{flag}: {dataset} has no class {', '.join(map(str, missing))}; "
            f"its classes are {', '.join(map(str, labels))}"
        )
    return resolved


def _tasks(dataset, args):
    """The tasks of ``args.protocol`` on ``dataset``, every class and count checked first."""
    X_train, y_train, X_test, y_test, image_shape = _load(dataset, args)
    labels = np.unique(y_train).tolist()
    classes = _resolve_classes("--classes", args.classes or [], labels, dataset) or None
    anomalies = args.anomaly_classes or []
    anomaly_classes = _resolve_classes("--anomaly-classes", anomalies, labels, dataset) or None
    n_classes = len(np.unique(y_test))
    if args.n_test is not None and args.n_test < n_classes:
        raise UsageError(
            f"--n-test {args.n_test}: the test set of {dataset} has {n_classes} classes, "
            "a stratified subset needs at least one image of each"
        )
    kept = stratified_subset(y_test, args.n_test)
    try:
        return make_tasks(
            dataset, args.protocol, X_train, y_train, X_test[kept], y_test[kept],
            classes=classes, max_train=args.max_train, contamination=args.contamination,
            anomaly_classes=anomaly_classes, max_normal_classes=args.max_normal_classes,
            image_shape=image_shape,
        )  # fmt: skip
    except ValueError as exc:  # a split the data cannot give, e.g. too much contamination
        raise UsageError(f"--protocol {args.protocol} on {dataset}: {exc}") from None


def _plan(args):
    """Check the whole command line and list the runs it asks for.

    Returns
    -------
    settings : dict
        Detector name -> the parameters given with ``--set``.
    records : list of dict
        The finished runs kept by ``--resume``.
    jobs : list of tuple
        ``(task, name, detector, seed)`` for :func:`run_all`, those of
        ``records`` left out.

    Raises
    ------
    UsageError
        At the first mistake, before anything is run.
    """
    _check_options(args)
    settings = parse_settings(args.set, args.detectors)
    detectors = _build_detectors(settings)
    out = Path(args.out)
    records = _finished_records(out / "results.json") if args.resume else []
    if args.all_rules:
        # A run finished without --all-rules lacks its other rules' records: run it again.
        records = _with_every_rule(records, detectors)
    done = {tuple(r[k] for k in _RUN_ID) for r in records}
    jobs = [
        (task, name, detector, seed)
        for dataset in args.dataset for task in _tasks(dataset, args)
        for seed in range(args.seeds) for name, detector in detectors.items()
        if (task.dataset, task.protocol, task.key, name, seed) not in done
    ]  # fmt: skip
    _check_writable(out)  # last: a mistake found earlier leaves no folder behind
    return settings, records, jobs


def _with_every_rule(records, detectors):
    """``records`` less the runs of ``detectors`` that lack a record for one of their
    other scoring rules (``"detector[rule]"``), and those rules' records."""
    present = {tuple(r[k] for k in _RUN_ID) for r in records}
    incomplete = set()
    for record in records:
        detector = detectors.get(record["detector"])
        rules = getattr(detector, "_score_rules", None)
        if not rules:
            continue
        run = tuple(record[k] for k in _RUN_ID)
        main = record.get("rule", detector.get_params()["score_type"])  # "rule": the resolved one
        expected = [(*run[:3], f"{record['detector']}[{rule}]", run[4]) for rule in rules if rule != main]
        # A record from before "rule" was kept, with score_type="auto": one of the rules is
        # the main one, so one of them may have no record of its own.
        allowed_missing = 0 if main in rules else 1
        if sum(other not in present for other in expected) > allowed_missing:
            incomplete |= {run, *expected}
    return [r for r in records if tuple(r[k] for k in _RUN_ID) not in incomplete]


def _connect(args, n_workers, stack):
    """Enter :func:`connect` on ``stack`` for ``--backend`` / ``--scheduler``, errors as usage errors."""
    try:
        return stack.enter_context(connect(args.backend, args.scheduler, n_workers=n_workers))
    except ImportError as exc:
        raise UsageError(_missing_backend(args.backend, exc.name)) from None
    except (OSError, RuntimeError, ValueError) as exc:  # an address that answers nothing
        what = (
            f"--scheduler {args.scheduler}: cannot connect"
            if args.scheduler
            else f"--backend {args.backend}: cannot start a local cluster"
        )
        raise UsageError(f"{what} ({' '.join(str(exc).split())})") from None


def _missing_backend(backend, module):
    extra = "dask[distributed]" if backend == "dask" else "ray"
    return f"--backend {backend} needs {module}: pip install '{extra}' (or 'skgeoad[{backend}]')"


def main(argv=None):
    """Run the benchmark that ``argv`` asks for; return the exit status.

    0 when every run succeeded, 1 when some failed (their errors are in the
    results), 130 when interrupted. A mistake on the command line exits
    with status 2 (``SystemExit``) before any run.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings, records, jobs = _plan(args)
    except UsageError as exc:
        parser.error(str(exc))
    with ExitStack() as cluster:  # closed however the runs end, Ctrl-C included
        if jobs:
            try:
                _connect(args, count_workers(args.n_jobs, len(jobs)), cluster)
            except UsageError as exc:
                parser.error(str(exc))
        return _run(args, settings, records, jobs)


def _planned_order(detectors):
    """A stable sort key putting records in ``--detectors`` order: parallel runs finish
    in any order, and the table's columns follow the records' (a run's rule records
    arrive together, in the order of its rules, and keep it)."""
    position = {name: i for i, name in enumerate(detectors)}
    return lambda record: position.get(str(record.get("detector", "")).partition("[")[0], len(position))


def _run(args, settings, records, jobs):
    """Run ``jobs``, writing results as they come; return the exit status."""
    budget = {
        "datasets": args.dataset, "protocol": args.protocol, "classes": args.classes,
        "max_train": args.max_train, "n_test": args.n_test, "seeds": args.seeds,
        "contamination": args.contamination if args.protocol == "contaminated" else None,
        "settings": settings, "n_jobs": args.n_jobs, "backend": args.backend,
        "all_rules": args.all_rules,
    }  # fmt: skip
    print(f"budget: {json.dumps(budget)}", flush=True)
    out = Path(args.out)
    if not jobs:
        print(
            f"--resume: all {len(records)} runs are already in {out}/results.json", file=sys.stderr
        )

    def save(record):
        records.append(record)
        write_results(out, budget, records)  # as results come: an interruption loses nothing

    start = time.perf_counter()
    try:
        run_all(
            jobs, n_jobs=args.n_jobs, backend=args.backend, on_record=save, progress=not args.quiet,
            all_rules=args.all_rules,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: the {len(records)} finished runs are in {out}/results.json; "
              "the same command with --resume runs the rest", file=sys.stderr)  # fmt: skip
        return 130
    wall = time.perf_counter() - start
    budget["wall_seconds"] = round(wall, 1)
    records.sort(key=_planned_order(args.detectors))
    write_results(out, budget, records)
    figure = plot_results(records, out / "results.png")
    print(format_tables(records))
    print(
        f"wall time: {wall:.0f} s; results in {out}/"
        + (f" (figure: {figure.name})" if figure else "")
    )
    return 1 if any("error" in r for r in records) else 0
