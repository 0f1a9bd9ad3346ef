"""One-command check of the four detectors on a CUDA GPU (sized for a lent H100/H200).

The iterative detector runs twice: with the paper's autoencoder (``icae``) and with
``network="geometric"`` (``icae-geometric``, GEOM's classifier inside its loop).

    python benchmarks/gpu_check.py 2>&1 | tee gpu_check.txt
    python benchmarks/gpu_check.py --parts 3,4        # rerun some parts
    python benchmarks/gpu_check.py --device cpu --tiny --threads 1  # every code path, on a CPU

Prints, with the GPU's name at the top:

1. every detector with its DEFAULT settings (only ``device``, ``random_state`` and
   ``mixed_precision`` set, and ``network`` for ``icae-geometric``) on Fashion-MNIST class 0 (2,000 normal training images, a fixed
   stratified draw of 2,000 test images; ADGAN, whose default scoring runs 64 seeds x 5 joint
   search steps per sample, scores only the first 256 of them), float32 against bf16: AUROC,
   fit and score seconds, peak GPU memory, and every scoring rule (switched after fit with
   ``set_params(score_type=...)``);
2. the float32 CUDA fits pickled with joblib, saved with ``skgeoad.save`` and exported with
   ``skgeoad.export_onnx``, loaded and scored in a subprocess that sees no GPU
   (``CUDA_VISIBLE_DEVICES=""``; ONNX by onnxruntime): whether they load, the warnings, the
   largest score difference and the Spearman rank correlation against the CUDA scores of the
   same images;
3. GEOM on the paper's protocol for one class (the 6,000 class-0 training images padded to
   32x32, WRN-10-4, 72 transformations, 3 epochs, the whole test set): seconds, transformed
   images per second, and the ratio to a bare torch loop doing the same work on the same GPU;
4. peak GPU memory while scoring 60,000 images, against the input's size, with skgeoad's
   default settings and (where skgeoad has ``config_context``) with ``device_data_bytes=0``,
   which streams the data to the device batch by batch.

Every step is guarded: an exception is printed and the check goes on; the exit status is 1
if anything failed. A step that would run past ``--budget`` seconds (default 450, keeping a
reserve for the parts still to come) is stopped and reported as a failure, so the whole
check ends within the budget. Without a CUDA device (and without ``--device cpu``) it prints
"no CUDA device: GPU check skipped" and exits 0.

``--tiny`` shrinks everything (a few hundred images, WRN-4-1, one epoch, 4 ADGAN seeds, ...)
so that ``--device cpu --tiny`` runs the same code paths in under a minute on two CPU cores;
its numbers measure nothing. On a busy machine add ``--threads 1`` (OpenMP threads competing
with other processes made it ten times slower).

Expected on one H100, from estimates (no GPU was at hand when this was written): part 1 about
200 s (ADGAN's GAN training, 6,000 critic steps, and joint search the largest share; ``icae-geometric`` about a GEOM
fit and three passes over the training set per precision), part 2 about 30 s, part 3
about 60 s, part 4 about 70 s, plus as much again for the streamed GEOM run when the budget
leaves time for it; about 7 minutes in all.
"""

import argparse
import contextlib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

# Rules each detector can score with after fit (``set_params(score_type=...)``).
RULES = {
    "geometric": ("dirichlet", "simplified", "knn", "combined"),
    "subcluster": ("msp", "odin", "kl", "knn"),
    "icae": ("cosine", "mse"),
    "icae-geometric": ("knn",),
    "adgan": ("reconstruction", "critic", "combined", "combined_two_sided"),
}

# Parameters --tiny changes from the defaults (only to make the CPU run short).
TINY_PARAMS = {
    "geometric": {"depth": 4, "widen_factor": 1, "epochs": 1},
    "subcluster": {"epochs": 2},
    "icae": {"epochs": 20},
    "icae-geometric": {"depth": 4, "widen_factor": 1, "epochs": 1},
    "adgan": {"epochs": 2, "n_seeds": 4, "max_offset_samples": 16},
}

# Nominal seconds per part on one H100 (the budget each part is printed against). A part
# may use what earlier parts left over, but never the reserve (half the nominal budget)
# of the parts still to come.
PART_BUDGETS = {1: 240, 2: 60, 3: 100, 4: 130}
PART_TITLES = {
    1: "default detectors, float32 vs bf16",
    2: "CUDA-fitted models (joblib, skgeoad.save, ONNX) loaded without a GPU",
    3: "GEOM, the paper's protocol for one class, vs a bare torch loop",
    4: "peak GPU memory while scoring many images",
}

# GEOM paper, Table 1, Fashion-MNIST class 0 (T-shirt/top), AUROC in %.
GEOM_PAPER_AUROC_CLASS0 = 99.4


# Data sizes: option name -> (full check, --tiny, what it sizes).
_SIZES = {
    "n_train": (2000, 100, "part 1 training images"),
    "n_test": (2000, 200, "part 1 test images"),
    "adgan_test": (256, 16, "part 1 ADGAN test images"),
    "n_pickle": (200, 50, "part 2 images scored"),
    "adgan_pickle": (32, 8, "part 2 ADGAN images scored"),
    "full_train": (6000, 100, "part 3 training images"),
    "full_test": (10000, 100, "part 3 test images"),
    "n_memory": (60000, 500, "part 4 images scored"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="cuda", help="torch device (default cuda; cpu for a dry run)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny sizes and networks: exercise the code paths"
    )
    parser.add_argument(
        "--parts", default="1,2,3,4", help="comma-separated parts to run (default 1,2,3,4)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds the whole check may take (default 450; --tiny: 900)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads, here and in part 2's subprocess (default: torch's)",
    )
    parser.add_argument(
        "--data-home", default=None, help="folder of the Fashion-MNIST IDX .gz files"
    )
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument(
        "--seed", type=int, default=0, help="random_state of every detector and draw"
    )
    for name, (full, tiny, what) in _SIZES.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), type=int, default=None,
            help=f"{what} ({full}; tiny {tiny})",
        )  # fmt: skip
    parser.add_argument(
        "--pickle-precision",
        choices=("fp32", "bf16", "both"),
        default="fp32",
        help="which part 1 fits part 2 pickles (default fp32)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {"budget": (450.0, 900.0)}
    defaults.update({name: (full, tiny) for name, (full, tiny, _) in _SIZES.items()})
    for name, (full, tiny) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    try:
        args.parts = sorted({int(p) for p in args.parts.split(",") if p.strip()})
    except ValueError:
        parser.error(f"--parts takes numbers 1-4 separated by commas, got {args.parts!r}")
    if not args.parts or not set(args.parts) <= {1, 2, 3, 4}:
        parser.error(f"--parts takes numbers 1-4 separated by commas, got {args.parts!r}")
    return args


# -- guarding and timing --------------------------------------------------------------


class StepTimeout(Exception):
    """A step ran out of the check's time budget."""


@contextlib.contextmanager
def time_limit(seconds, what):
    """Raise ``StepTimeout`` inside the block after ``seconds`` (SIGALRM, main thread).

    With the budget already spent the block still starts, and is stopped after 1 s.
    """
    spent = seconds < 1
    seconds = max(1.0, seconds)

    def on_alarm(signum, frame):
        if spent:
            raise StepTimeout(f"{what}: not run, the time budget was spent")
        raise StepTimeout(f"stopped after {seconds:.0f} s: out of the time budget")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe(exc):
    """``Type: first line of the message (at skgeoad/file.py:line)``."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "skgeoad" in frame.filename.replace(os.sep, "/"):
            parts = Path(frame.filename).parts
            where = f" (at {'/'.join(parts[parts.index('skgeoad') :])}:{frame.lineno})"
            break
    return f"{type(exc).__name__}: {message[:240]}{where}"


class Check:
    """State shared by the parts: options, device, data, fitted detectors, failures, clock."""

    def __init__(self, args, torch):
        self.args = args
        self.torch = torch
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.start = time.perf_counter()
        self.failures = []
        self.fitted = {}  # (name, precision) -> fitted detector
        self.part = None

    # clock
    def elapsed(self):
        return time.perf_counter() - self.start

    def time_left(self):
        """Seconds the current step may take: the budget left minus the later parts' reserve."""
        reserve = sum(0.5 * PART_BUDGETS[p] for p in self.args.parts if p > self.part)
        return self.args.budget - self.elapsed() - reserve

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def timed(self, function, *args, **kwargs):
        """``(result, seconds)`` of ``function(*args, **kwargs)``, device synchronised."""
        self.sync()
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.sync()
        return result, time.perf_counter() - start

    # memory
    def reset_peak(self):
        if self.cuda:
            self.sync()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)
        return self.allocated_mib()

    def allocated_mib(self):
        return self.torch.cuda.memory_allocated(self.device) / 2**20 if self.cuda else math.nan

    def peak_mib(self):
        return self.torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else math.nan

    # failures
    def fail(self, what, error):
        text = describe(error) if isinstance(error, BaseException) else str(error)
        self.failures.append(f"part {self.part}: {what}: {text}")
        print(f"  FAIL {what}: {text}")

    @contextlib.contextmanager
    def step(self, what, quiet_warnings=False):
        """Run a block under the time budget; on any exception record a failure and go on.

        Yields a dict whose ``"ok"`` is set to True when the block finished, and whose
        ``"warnings"`` lists the distinct warnings it raised.
        """
        outcome = {"ok": False, "warnings": []}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with time_limit(self.time_left(), what):
                    yield outcome
            outcome["ok"] = True
        except (Exception, StepTimeout) as exc:  # noqa: BLE001 - every failure must be reported
            self.fail(what, exc)
            with contextlib.suppress(Exception):
                self.sync()
        finally:
            seen = []
            for item in locals().get("caught") or []:
                text = f"{item.category.__name__}: {str(item.message).splitlines()[0][:200]}"
                if text not in seen:
                    seen.append(text)
            outcome["warnings"] = seen
            if seen and not quiet_warnings:
                for text in seen:
                    print(f"  warning in {what}: {text}")


# -- formatting ------------------------------------------------------------------------


def fmt(value, spec=".3f", missing="-"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, str):
        return value
    return format(value, spec)


def print_table(headers, rows, indent="  "):
    """Fixed-width table: first column left-aligned, the others right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
        for i, h in enumerate(headers)
    ]

    def line(cells):
        first = f"{cells[0]:<{widths[0]}}"
        return indent + "  ".join([first] + [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:])])

    print(line([str(h) for h in headers]))
    print(indent + "  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


# -- data -------------------------------------------------------------------------------


def stratified_order(y, rng):
    """Indices of ``y`` with the classes interleaved: every prefix is (nearly) stratified."""
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = []
    for i in range(max(len(p) for p in pools)):
        order.extend(int(p[i]) for p in pools if i < len(p))
    return np.asarray(order)


def load_data(args):
    from skgeoad.datasets import load_fashion_mnist

    X_train, y_train, X_test, y_test = load_fashion_mnist(args.data_home)
    rng = np.random.default_rng(args.seed)
    normal = np.flatnonzero(y_train == args.normal_class)
    if args.n_train > len(normal) or args.full_train > len(normal):
        raise ValueError(f"class {args.normal_class} has only {len(normal)} training images.")
    chosen = np.sort(rng.choice(normal, args.n_train, replace=False))
    order = stratified_order(y_test, rng)
    as_float = lambda a: a.astype(np.float32) / np.float32(255)
    return {
        "X_train_raw": X_train,
        "y_train": y_train,
        "X_test_raw": X_test,
        "y_test": y_test,
        "X_fit": as_float(X_train[chosen]),
        "test_order": order,
        "X_eval": as_float(X_test[order[: args.n_test]]),
        "y_eval": y_test[order[: args.n_test]] == args.normal_class,
        "normal_train": normal,
        "as_float": as_float,
    }


# -- detectors --------------------------------------------------------------------------


def detector_classes():
    from skgeoad import (
        ADGANDetector,
        GeometricTransformDetector,
        IterativeClusterAEDetector,
        SubClusterDetector,
    )

    # Cheapest first, ADGAN (the most expensive and the least predictable) last.
    return {
        "geometric": GeometricTransformDetector,
        "subcluster": SubClusterDetector,
        "icae": IterativeClusterAEDetector,
        # The select -> train -> re-select loop around GEOM's classifier (its k-NN score).
        "icae-geometric": functools.partial(IterativeClusterAEDetector, network="geometric"),
        "adgan": ADGANDetector,
    }


def make_detector(check, name, precision):
    params = {
        "device": check.args.device,
        "random_state": check.args.seed,
        "mixed_precision": {"fp32": False, "bf16": True}[precision],
    }
    if check.args.tiny:
        params.update(TINY_PARAMS[name])
    return detector_classes()[name](**params)


def auroc(is_normal, scores):
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        return math.nan
    return float(roc_auc_score(is_normal, scores))


# -- part 1 -----------------------------------------------------------------------------


def part1(check, data):
    args = check.args
    print(
        f"  normal class {args.normal_class}: {args.n_train} training images (28x28); test: a fixed "
        f"stratified draw of {args.n_test} test images ({int(data['y_eval'].sum())} normal); "
        f"ADGAN scores only the first {min(args.adgan_test, args.n_test)} of them (its default scoring "
        "runs 64 seeds x 5 joint search steps per sample, and its fit scores up to max_offset_samples=512 "
        "more (the held-out ones) for offset_)."
    )
    if args.tiny:
        print(f"  --tiny: not the defaults: {TINY_PARAMS}")
    results = {}  # (name, rule, precision) -> dict
    step_warnings = {}  # distinct warning -> the steps that raised it
    for name in detector_classes():
        n_test = min(args.adgan_test, args.n_test) if name == "adgan" else args.n_test
        X_eval, y_eval = data["X_eval"][:n_test], data["y_eval"][:n_test]
        for precision in ("fp32", "bf16"):
            label = f"{name} {precision}"
            detector = make_detector(check, name, precision)
            default_rule = detector.get_params().get("score_type", "-")
            with check.step(f"{label} fit", quiet_warnings=True) as fit_step:
                base = check.reset_peak()
                _, fit_s = check.timed(detector.fit, data["X_fit"])
                fit_peak = check.peak_mib() - base
            if not fit_step["ok"]:
                check.fitted[(name, precision)] = None
                continue
            check.fitted[(name, precision)] = detector
            for text in fit_step["warnings"]:
                step_warnings.setdefault(text, []).append(label)
            # score_type="auto" is one of the rules by another name: score it once.
            resolved = detector._score_rule()
            for rule in (default_rule, *[r for r in RULES[name] if r not in (default_rule, resolved)]):
                with check.step(f"{label} score_type={rule}", quiet_warnings=True) as score_step:
                    if rule != "-":
                        detector.set_params(score_type=rule)
                    base = check.reset_peak()
                    scores, score_s = check.timed(detector.score_samples, X_eval)
                    results[(name, rule, precision)] = {
                        "auroc": auroc(y_eval, scores),
                        "score_s": score_s,
                        "n_test": n_test,
                        "fit_s": fit_s if rule == default_rule else None,
                        "peak": max(fit_peak, check.peak_mib() - base)
                        if rule == default_rule
                        else None,
                    }
                for text in score_step["warnings"]:
                    step_warnings.setdefault(text, []).append(f"{label} {rule}")
            if default_rule != "-":
                detector.set_params(score_type=default_rule)
            check.sync()
        rows_done = [k for k in results if k[0] == name]
        print(f"  done {name} ({check.elapsed():.0f} s elapsed, {len(rows_done)} results)")

    rows = []
    for name in detector_classes():
        rules = list(dict.fromkeys(rule for (n, rule, _) in results if n == name))
        for rule in rules:
            r32, r16 = results.get((name, rule, "fp32")), results.get((name, rule, "bf16"))
            get = lambda r, key: None if r is None else r[key]
            a32, a16 = get(r32, "auroc"), get(r16, "auroc")
            delta = a16 - a32 if a32 is not None and a16 is not None else None
            n_test = get(r32, "n_test") or get(r16, "n_test")
            rows.append(
                [
                    name if rule == "-" else f"{name}/{rule}",
                    n_test,
                    fmt(a32, ".4f", "FAIL"),
                    fmt(a16, ".4f", "FAIL"),
                    fmt(delta, "+.4f"),
                    fmt(get(r32, "fit_s"), ".1f"),
                    fmt(get(r16, "fit_s"), ".1f"),
                    fmt(get(r32, "score_s"), ".2f", "FAIL"),
                    fmt(get(r16, "score_s"), ".2f", "FAIL"),
                    fmt(get(r32, "peak"), ".0f"),
                    fmt(get(r16, "peak"), ".0f"),
                ]
            )
        if not rules:
            rows.append([name, "-", "FAIL", "FAIL", "-", "-", "-", "-", "-", "-", "-"])
    print()
    print_table(
        [
            "detector/rule",
            "n_test",
            "AUROC fp32",
            "AUROC bf16",
            "bf16-fp32",
            "fit s fp32",
            "fit s bf16",
            "score s fp32",
            "score s bf16",
            "MiB fp32",
            "MiB bf16",
        ],
        rows,
    )
    print(
        "  (fit s and peak GPU MiB on the default rule's row; fp32 = mixed_precision=False, "
        "bf16 = mixed_precision=True)"
    )
    for text, labels in step_warnings.items():
        print(f"  warning in {', '.join(labels)}: {text}")


# -- part 2 -----------------------------------------------------------------------------


def fit_for_reuse(check, data, name, precision):
    """A fitted detector from part 1, or a fresh fit (part 1 not run); None if it failed."""
    key = (name, precision)
    if key not in check.fitted:
        detector = make_detector(check, name, precision)
        with check.step(f"{name} {precision} fit") as step:
            check.timed(detector.fit, data["X_fit"])
        check.fitted[key] = detector if step["ok"] else None
    return check.fitted[key]


def _write_joblib(detector, path):
    import joblib

    joblib.dump(detector, path)


def _write_skgeoad(detector, path):
    import skgeoad

    skgeoad.save(detector, path)


def _write_onnx(detector, path):
    import skgeoad

    skgeoad.export_onnx(detector, path)


#: Part 2's files: how a fitted detector is written, and (in the subprocess) read back.
FILE_FORMATS = {"joblib": _write_joblib, "skgeoad": _write_skgeoad, "onnx": _write_onnx}


class _OnnxScorer:
    """An exported model behind ``score_samples``, run by onnxruntime alone."""

    def __init__(self, path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def score_samples(self, X):
        rows = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        return self.session.run(["score_samples"], {"X": rows})[0]


def _load_joblib(path):
    import joblib

    return joblib.load(path)


def _load_skgeoad(path):
    import skgeoad

    return skgeoad.load(path)


LOADERS = {"joblib": _load_joblib, "skgeoad": _load_skgeoad, "onnx": _OnnxScorer}


def _exportable(detector):
    """ADGAN's joint search is an optimisation of generator copies: export refuses it."""
    return getattr(detector, "search", None) != "joint"


def part2(check, data):
    from scipy.stats import spearmanr

    args = check.args
    precisions = ("fp32", "bf16") if args.pickle_precision == "both" else (args.pickle_precision,)
    print(
        f"  {args.device}-fitted detectors ({', '.join(precisions)}) -> joblib.dump, skgeoad.save and "
        f'skgeoad.export_onnx -> a subprocess with CUDA_VISIBLE_DEVICES="" loads each file (ONNX: '
        f"onnxruntime) and scores the first {args.n_pickle} part-1 test images "
        f"(ADGAN: the first {args.adgan_pickle})."
    )
    with tempfile.TemporaryDirectory(prefix="skgeoad_gpu_check_") as directory:
        directory = Path(directory)
        manifest, reference = {}, {}
        for name in detector_classes():
            n = args.adgan_pickle if name == "adgan" else args.n_pickle
            X = (
                data["X_eval"][:n]
                if n <= len(data["X_eval"])
                else data["as_float"](data["X_test_raw"][data["test_order"][:n]])
            )
            for precision in precisions:
                key = f"{name}-{precision}"
                detector = fit_for_reuse(check, data, name, precision)
                if detector is None:
                    print(f"  skip {key}: no fitted detector (its fit failed, reported above)")
                    continue
                with check.step(f"{key} {args.device} scores") as step:
                    scores, _ = check.timed(detector.score_samples, X)
                    np.save(directory / f"{key}.X.npy", X)
                if not step["ok"]:
                    continue
                for file_format, write in FILE_FORMATS.items():
                    path = directory / f"{key}.{file_format}"
                    if file_format == "onnx" and not _exportable(detector):
                        print(f"  skip {key}.onnx: {type(detector).__name__}(search='joint') does not export")
                        continue
                    with check.step(f"{key} {file_format} write") as step:
                        write(detector, path)
                    if step["ok"]:
                        reference[f"{key}.{file_format}"] = scores
                        manifest[f"{key}.{file_format}"] = {
                            "file": str(path),
                            "format": file_format,
                            "X": str(directory / f"{key}.X.npy"),
                            "mib": path.stat().st_size / 2**20,
                        }
        if not manifest:
            return
        (directory / "manifest.json").write_text(json.dumps(manifest))
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        command = [sys.executable, os.path.abspath(__file__), "--child", str(directory)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        with check.step("subprocess without GPU") as step:
            start = time.perf_counter()
            child = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=max(1.0, check.time_left() - 1),
            )
            child_s = time.perf_counter() - start
            if child.returncode != 0 or not (directory / "results.json").exists():
                tail = " | ".join((child.stderr or child.stdout).strip().splitlines()[-3:])
                raise RuntimeError(f"subprocess exited {child.returncode}: {tail[:400]}")
        if not step["ok"]:
            return
        results = json.loads((directory / "results.json").read_text())
        print(
            f"  subprocess: {child_s:.1f} s, torch.cuda.is_available() = {results['cuda_available']}, "
            f"{results['threads']} CPU threads"
        )
        rows, notes = [], []
        for key, info in manifest.items():
            entry = results["detectors"].get(key, {"error": "not reported by the subprocess"})
            if "error" in entry and not entry.get("loaded"):
                check.fail(f"{key} load", entry["error"])
                rows.append([key, f"{info['mib']:.1f}", "no", "-", "-", "-", "-", "-"])
                continue
            for text in entry.get("warnings", []):
                notes.append(f"  {key} load warning: {text}")
            for text in entry.get("score_warnings", []):
                notes.append(f"  {key} scoring warning: {text}")
            loaded = [
                key, f"{info['mib']:.1f}", "yes",
                entry.get("device_", "?"), str(entry.get("mixed_precision_", "?")),
            ]  # fmt: skip
            if "error" in entry:
                check.fail(f"{key} scoring after load", entry["error"])
                rows.append([*loaded, "FAIL", "-", "-"])
                continue
            cpu_scores = np.load(directory / f"{key}.scores.npy")
            cuda_scores = reference[key]
            if cpu_scores.shape != cuda_scores.shape:
                check.fail(
                    f"{key} scores", f"shape {cpu_scores.shape} after load vs {cuda_scores.shape}"
                )
                continue
            diff = float(np.max(np.abs(cpu_scores - cuda_scores)))
            spread = float(np.ptp(cuda_scores)) or 1.0
            rho = float(spearmanr(cpu_scores, cuda_scores)[0]) if len(cuda_scores) > 2 else math.nan
            if not np.isfinite(diff):
                check.fail(f"{key} scores", "non-finite scores after load")
            rows.append([*loaded, f"{diff:.3g}", f"{diff / spread:.2g}", fmt(rho, ".5f")])
        print_table(
            [
                "file",
                "MiB",
                "loaded",
                "device_",
                "mixed_precision_",
                "max |diff|",
                "/ score range",
                "Spearman",
            ],
            rows,
        )
        for note in dict.fromkeys(notes):
            print(note)
        if not notes:
            print("  (no warning on load or scoring)")


def child_main(directory):
    """Run in the subprocess of part 2: load each file on a machine without a GPU, score."""
    import torch

    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    results = {
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "detectors": {},
    }
    for key, info in manifest.items():
        entry = {"loaded": False}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                detector = LOADERS[info["format"]](info["file"])
            entry["loaded"] = True
            entry["warnings"] = list(
                dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
            )
            entry["device_"] = str(getattr(detector, "device_", "-"))
            entry["mixed_precision_"] = getattr(detector, "mixed_precision_", "-")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                scores = detector.score_samples(np.load(info["X"]))
            entry["score_warnings"] = list(
                dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
            )
            np.save(directory / f"{key}.scores.npy", np.asarray(scores, dtype=np.float64))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            entry["error"] = describe(exc)
        results["detectors"][key] = entry
    (directory / "results.json").write_text(json.dumps(results, default=str))


# -- part 3 -----------------------------------------------------------------------------


def bare_loop(
    check, n_transforms, depth, widen_factor, batch_size, bf16, train_steps, infer_passes, pass_size
):
    """Seconds of ``train_steps`` Adam steps and of ``infer_passes`` scoring passes of a bare WRN.

    The same network class, optimiser and batch size as the detector, on one batch of
    random 32x32 images already on the device, channels-last as the detector computes
    (``bare_loop.BareLoop``, the loop every throughput comparison uses): no data
    handling, no transformations.
    """
    torch = check.torch
    from bare_loop import BareLoop
    from skgeoad.networks import WideResNet

    loop = BareLoop(check.device, bf16=bf16, channels_last=True)
    network = loop.network(WideResNet(1, n_transforms, depth, widen_factor))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=5e-4)
    images = loop.batch(batch_size, 1, 32, 32)
    labels = torch.randint(0, n_transforms, (batch_size,), device=check.device)
    train_s = loop.train(
        network, optimizer,
        lambda net: torch.nn.functional.cross_entropy(net(images).float(), labels), train_steps,
    )  # fmt: skip
    batch = loop.batch(pass_size, 1, 32, 32)
    network.eval()
    infer_s = loop.infer(lambda n: torch.log_softmax(network(batch[:n]).float(), 1), infer_passes * pass_size, pass_size)
    return train_s, infer_s


def part3(check, data):
    from skgeoad import GeometricTransformDetector
    from skgeoad.datasets import pad_images

    args = check.args
    params = {"device": args.device, "random_state": args.seed}
    if args.tiny:
        params.update(TINY_PARAMS["geometric"])
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(data["normal_train"], args.full_train, replace=False))
    X_fit = pad_images(data["as_float"](data["X_train_raw"][chosen]), 2)
    test = data["test_order"][: args.full_test]
    X_test = pad_images(data["as_float"](data["X_test_raw"][test]), 2)
    y_test = data["y_test"][test] == args.normal_class
    detector = GeometricTransformDetector(**params)
    with check.step("GEOM fit") as step:
        _, fit_s = check.timed(detector.fit, X_fit)
    if not step["ok"]:
        return
    with check.step("GEOM score") as step:
        scores, score_s = check.timed(detector.score_samples, X_test)
    if not step["ok"]:
        return
    n_transforms = detector.n_transforms_
    epochs = detector.epochs_
    bf16 = bool(getattr(detector, "mixed_precision_", False))
    depth, widen, batch = detector.depth, detector.widen_factor, detector.batch_size
    print(
        f"  {len(X_fit)} training images of class {args.normal_class} padded to 32x32, WRN-{depth}-{widen}, "
        f"{n_transforms} transformations, {epochs} epochs, batch {batch}, "
        f"mixed_precision_={bf16}; scored on {len(X_test)} test images ({int(y_test.sum())} normal)"
    )
    print(
        f"  AUROC {auroc(y_test, scores):.4f} (GEOM paper, Table 1, class 0: "
        f"{GEOM_PAPER_AUROC_CLASS0 / 100:.3f}, full test set)"
    )

    # What went through the network during fit, from public parameters and history_: with
    # validation_fraction > 0 a share of the images is held out of training; the held-out
    # images are evaluated after every epoch that records a validation_loss and scored once
    # for offset_; the training images pass once more for the Dirichlet fit.
    fraction = detector.get_params().get("validation_fraction", 0) or 0
    n_held_out = max(1, round(fraction * len(X_fit))) if fraction > 0 else 0
    n_trained = len(X_fit) - n_held_out
    history = getattr(detector, "history_", []) or []
    validation_epochs = sum(1 for record in history if "validation_loss" in record)
    train_images = epochs * n_trained * n_transforms  # forward + backward
    dirichlet_images = (
        n_trained + n_held_out * (validation_epochs + 1)
    ) * n_transforms  # forward only
    score_images = len(X_test) * n_transforms
    print(
        f"  fit: {n_trained} images trained on, {n_held_out} held out (validation_fraction={fraction}, "
        f"evaluated after {validation_epochs} epochs); inference during fit = Dirichlet pass + held-out passes"
    )
    # The detector's scoring passes hold batch_size network inputs for 32x32 images, that
    # is whole samples: floor(128 / 72) = 1 sample, 72 images, per pass.
    pass_size = max(1, batch // n_transforms) * n_transforms
    wide_pass = 16 * n_transforms
    total_steps = math.ceil(train_images / batch)
    # The bare loop's rate is measured on one epoch's worth of steps (at most) and the
    # inference on up to 2,000 passes, then scaled to the detector's amount of work.
    bare_steps = max(10, min(total_steps, math.ceil(total_steps / epochs)))
    bare_passes = max(10, min(2000, math.ceil((dirichlet_images + score_images) / pass_size)))
    wide_passes = max(5, bare_passes * pass_size // wide_pass // 4)
    with check.step("bare torch loop") as step:
        train_s, infer_s = bare_loop(
            check, n_transforms, depth, widen, batch, bf16, bare_steps, bare_passes, pass_size
        )
        _, wide_s = bare_loop(
            check, n_transforms, depth, widen, batch, bf16, 0, wide_passes, wide_pass
        )
    if not step["ok"]:
        return
    train_rate = bare_steps * batch / train_s
    infer_rate = bare_passes * pass_size / infer_s
    wide_rate = wide_passes * wide_pass / wide_s
    bare_fit = train_images / train_rate + dirichlet_images / infer_rate
    bare_score = score_images / infer_rate
    print_table(
        [
            "",
            "images",
            "detector s",
            "detector img/s",
            "bare s",
            "bare img/s",
            "bare s / detector s",
        ],
        [
            [
                "fit (train + inference)",
                f"{train_images:,} + {dirichlet_images:,}",
                f"{fit_s:.1f}",
                f"{(train_images + dirichlet_images) / fit_s:,.0f}",
                f"{bare_fit:.1f}",
                f"{(train_images + dirichlet_images) / bare_fit:,.0f}",
                f"{bare_fit / fit_s:.2f}",
            ],
            [
                "  train only (bare rate)",
                f"{train_images:,}",
                "-",
                "-",
                f"{train_images / train_rate:.1f}",
                f"{train_rate:,.0f}",
                "-",
            ],
            [
                f"score ({pass_size} images/pass)",
                f"{score_images:,}",
                f"{score_s:.1f}",
                f"{score_images / score_s:,.0f}",
                f"{bare_score:.1f}",
                f"{infer_rate:,.0f}",
                f"{bare_score / score_s:.2f}",
            ],
            [
                f"  bare at {wide_pass} images/pass",
                f"{score_images:,}",
                "-",
                "-",
                f"{score_images / wide_rate:.1f}",
                f"{wide_rate:,.0f}",
                f"{score_images / wide_rate / score_s:.2f}",
            ],
        ],
    )
    print(
        f"  (bare: same WideResNet, Adam, batch {batch}, {'bf16 autocast' if bf16 else 'float32'}, random "
        f"32x32 inputs already on the device; rates measured on {bare_steps} steps and {bare_passes} + "
        f"{wide_passes} passes, scaled to the detector's work; bare s / detector s = 1.0: no overhead)"
    )


# -- part 4 -----------------------------------------------------------------------------


def part4(check, data):
    import skgeoad

    args = check.args
    n = min(args.n_memory, len(data["X_train_raw"]))
    X = data["as_float"](data["X_train_raw"][:n])
    input_mib = X.nbytes / 2**20
    print(
        f"  scoring {n:,} Fashion-MNIST training images (all classes), 28x28 float32: input "
        f"{input_mib:.1f} MiB ({data['X_train_raw'][:n].nbytes / 2**20:.1f} MiB as uint8)"
    )
    # Newer skgeoad keeps data up to get_config()["device_data_bytes"] whole on the device and
    # streams larger data; config_context(device_data_bytes=0) streams everything.
    config_context = getattr(skgeoad, "config_context", None)
    get_config = getattr(skgeoad, "get_config", None)
    if get_config is not None:
        print(f"  skgeoad.get_config(): {get_config()}")
    if not check.cuda:
        print("  (no CUDA device: peak GPU memory n/a; the scoring runs anyway)")
    detectors = {}
    for name in ("subcluster", "icae", "geometric"):
        for precision in ("bf16", "fp32"):
            if check.fitted.get((name, precision)) is not None:
                detectors[name] = (check.fitted[(name, precision)], precision)
                break
        else:
            precision = "bf16" if check.cuda else "fp32"
            detector = fit_for_reuse(check, data, name, precision)
            if detector is not None:
                detectors[name] = (detector, precision)
    runs = [
        (name, rule, "default")
        for name, rules in (
            ("subcluster", RULES["subcluster"]),
            ("icae", ("auto",)),
            ("geometric", ("dirichlet",)),
        )
        for rule in rules
    ]
    if config_context is not None:
        runs += [
            ("subcluster", "msp", "streamed"),
            ("icae", "auto", "streamed"),
            ("geometric", "dirichlet", "streamed"),
        ]
    else:
        print("  (skgeoad has no config_context: no run with device_data_bytes=0)")
    rows, seconds_of = [], {}
    for name, rule, setting in runs:
        if name not in detectors:
            continue
        detector, precision = detectors[name]
        # The expensive one: run it only if it fits in what the budget leaves.
        if (
            setting == "streamed"
            and name == "geometric"
            and "geometric" in seconds_of
            and check.time_left() < 1.3 * seconds_of["geometric"] + 5
        ):
            print(
                f"  geometric streamed: skipped, {check.time_left():.0f} s left in the budget and the "
                f"default run took {seconds_of['geometric']:.0f} s (rerun: --parts 4 --budget 300)"
            )
            continue
        context = (
            config_context(device_data_bytes=0)
            if setting == "streamed"
            else contextlib.nullcontext()
        )
        default_rule = detector.get_params().get("score_type")
        with check.step(f"{name} {precision} score_type={rule} {setting} on {n:,} images") as step:
            detector.set_params(score_type=rule)
            with context:
                base = check.reset_peak()
                scores, seconds = check.timed(detector.score_samples, X)
                peak = check.peak_mib()
            if len(scores) != n or not np.all(np.isfinite(scores)):
                raise ValueError(
                    f"{len(scores)} scores, {int(np.sum(~np.isfinite(np.asarray(scores))))} not finite"
                )
        detector.set_params(score_type=default_rule)
        if step["ok"]:
            seconds_of.setdefault(name, seconds)
            working = peak - base
            verdict = (
                "-" if not check.cuda else ("bounded" if working < 0.5 * input_mib else "holds X")
            )
            rows.append(
                [
                    f"{name}/{rule} ({precision})",
                    setting,
                    f"{seconds:.1f}",
                    f"{n / seconds:,.0f}",
                    fmt(base, ".0f"),
                    fmt(peak, ".0f"),
                    fmt(working, ".0f"),
                    f"{input_mib:.1f}",
                    verdict,
                ]
            )
    print_table(
        [
            "detector/rule (fit)",
            "data",
            "score s",
            "samples/s",
            "MiB before",
            "peak MiB",
            "peak - before",
            "input MiB",
            "device memory",
        ],
        rows,
    )
    print(
        "  (MiB before: torch.cuda.memory_allocated as scoring starts, i.e. the fitted models this check "
        "holds; peak: max_memory_allocated during scoring. 'bounded': the scoring's own device memory "
        "(peak - before) is under half the input's size; 'holds X': it is not. data: default = "
        "skgeoad's default settings, streamed = config_context(device_data_bytes=0))"
    )


# -- main -------------------------------------------------------------------------------


def header(check):
    torch = check.torch
    import platform

    import skgeoad

    if check.cuda:
        index = check.device.index or 0
        properties = torch.cuda.get_device_properties(index)
        print(
            f"DEVICE: {torch.cuda.get_device_name(index)} ({properties.total_memory / 2**30:.0f} GiB, "
            f"CUDA {torch.version.cuda}, bf16 supported: {torch.cuda.is_bf16_supported()})"
        )
        print(
            f"float32 convolutions use TF32: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"
        )
    else:
        print(
            f"DEVICE: {check.device} ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads)"
        )
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
    print(
        f"skgeoad {skgeoad.__version__} {commit}, torch {torch.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    from skgeoad import get_config
    from skgeoad._torch import native_bf16

    layout = "channels-last (NHWC)" if get_config().get("channels_last", False) else "NCHW"
    print(
        f"memory format: {layout}; mixed_precision='auto' resolves to "
        f"{'bf16 autocast' if native_bf16(check.device) else 'float32'} on {check.device} "
        "(part 1 runs both precisions explicitly)"
    )
    print(
        f"parts {','.join(map(str, check.args.parts))}, budget {check.args.budget:.0f} s"
        f"{', --tiny (sizes shrunk: numbers measure nothing)' if check.args.tiny else ''}"
    )


def warm_up(check):
    """Initialise CUDA, cuDNN and cuBLAS so that the first detector's timings do not pay for it."""
    torch = check.torch
    from skgeoad.networks import WideResNet

    network = WideResNet(1, 4, 10, 1).to(check.device)
    x = torch.randn(8, 1, 28, 28, device=check.device)
    for bf16 in (False, True):
        with torch.autocast(check.device.type, dtype=torch.bfloat16, enabled=bf16):
            network(x).float().sum().backward()
    check.sync()


def main(argv=None):
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child_main(args.child)
        return 0
    sys.stdout.reconfigure(line_buffering=True)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: GPU check skipped")
        return 0
    check = Check(args, torch)
    header(check)
    try:
        data = load_data(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"Fashion-MNIST not usable, nothing was run: {exc}")
        return 1
    check.part = 0
    with check.step("warm-up"):
        warm_up(check)
    parts = {1: part1, 2: part2, 3: part3, 4: part4}
    summary = []
    for number in args.parts:
        check.part = number
        n_failures = len(check.failures)
        start = time.perf_counter()
        print(
            f"\n== part {number}: {PART_TITLES[number]} (budget {PART_BUDGETS[number]} s"
            f"{' on an H100' if not args.tiny else ''}) =="
        )
        try:
            parts[number](check, data)
        except (Exception, StepTimeout) as exc:  # noqa: BLE001 - a bug in a part must not stop the others
            check.fail("part aborted", exc)
        seconds = time.perf_counter() - start
        over = " OVER BUDGET" if seconds > PART_BUDGETS[number] and not args.tiny else ""
        status = (
            "ok"
            if len(check.failures) == n_failures
            else f"{len(check.failures) - n_failures} failure(s)"
        )
        line = f"part {number}: {seconds:.0f} s of {PART_BUDGETS[number]} s budget{over}, {status}"
        summary.append(line)
        print(f"-- {line}")
    device = (
        torch.cuda.get_device_name(check.device.index or 0) if check.cuda else str(check.device)
    )
    print(f"\n== summary ({device}, {check.elapsed():.0f} s in all) ==")
    for line in summary:
        print(f"  {line}")
    if check.failures:
        print(f"FAILURES ({len(check.failures)}):")
        for failure in check.failures:
            print(f"  {failure}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
