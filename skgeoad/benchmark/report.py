"""Results of a benchmark run: JSON records, a Markdown table like the papers', a figure."""

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

#: Published one-vs-all AUROC (%) per class, quoted for reference next to our
#: own runs: Golan & El-Yaniv (2018), Table 1 (5-run means; the OC-SVM had
#: hindsight hyper-parameters, ADGAN was run by the GEOM authors).
PUBLISHED = {
    ("fashion-mnist", "one-vs-all"): {
        "GEOM paper": [99.4, 97.6, 91.1, 89.9, 92.1, 93.4, 83.3, 98.9, 90.8, 99.2],
        "RAW-OC-SVM paper": [98.2, 90.3, 90.7, 94.2, 89.4, 91.8, 83.4, 98.8, 91.9, 99.0],
        "ADGAN paper": [89.9, 81.9, 87.6, 91.2, 86.5, 89.6, 74.3, 97.2, 89.0, 97.1],
    },
    ("cifar10", "one-vs-all"): {
        "GEOM paper": [74.7, 95.7, 78.1, 72.4, 87.8, 87.8, 83.4, 95.5, 93.3, 91.3],
        "RAW-OC-SVM paper": [70.6, 51.3, 69.1, 52.4, 77.3, 51.2, 74.1, 52.6, 70.9, 50.6],
        "ADGAN paper": [64.9, 39.0, 65.2, 48.1, 73.5, 47.6, 62.3, 48.7, 66.0, 37.8],
    },
}

_KEY_NAMES = {"one-vs-all": "class", "contaminated": "class", "multi-normal": "k normal"}


def _mean_sem(values):
    if len(values) == 1:
        return values[0], None
    return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values)))


def format_tables(records):
    """One Markdown table per data set x protocol: AUROC (%) per task and detector.

    Cells are the mean over seeds with its standard error; the best detector
    of each row is in bold; failed runs are listed under the table. A task a
    detector has no record for yet (the file is rewritten as results come) shows
    ``-``, not ``failed``.

    Examples
    --------
    >>> records = [{"dataset": "digits", "protocol": "one-vs-all", "key": 0, "detector": "pca",
    ...             "seed": 0, "auroc": 0.98, "fit_seconds": 0.1, "score_seconds": 0.1}]
    >>> print(format_tables(records))
    ### digits, one-vs-all
    <BLANKLINE>
    | class | pca |
    |---|---|
    | 0 | **98.0** |
    | mean | **98.0** |
    | fit + score s | 0 + 0 |
    """
    groups = defaultdict(list)
    for record in records:
        groups[record["dataset"], record["protocol"]].append(record)
    return "\n\n".join(_format_group(group, rows) for group, rows in sorted(groups.items()))


def _format_group(group, records):
    dataset, protocol = group
    detectors = list(dict.fromkeys(r["detector"] for r in records))
    keys = sorted({r["key"] for r in records if r["key"] is not None})  # None: the data set failed
    published = PUBLISHED.get(group, {}) if keys else {}
    auroc = defaultdict(list)
    for r in records:
        if "auroc" in r:
            auroc[r["key"], r["detector"]].append(100 * r["auroc"])
    failed = {(r["key"], r["detector"]) for r in records if "error" in r}

    header = [_KEY_NAMES[protocol], *detectors, *published]
    lines = [f"### {dataset}, {protocol}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for key in keys:
        cells = {d: _mean_sem(auroc[key, d]) for d in detectors if auroc[key, d]}
        best = max((m for m, _ in cells.values()), default=None)
        row = [str(key)]
        for d in detectors:
            if d not in cells:
                row.append("failed" if (key, d) in failed else "-")
                continue
            mean, sem = cells[d]
            text = f"{mean:.1f}" + (f" ± {sem:.1f}" if sem is not None else "")
            row.append(f"**{text}**" if mean == best else text)
        row += [f"{values[key]:.1f}" if key < len(values) else "-" for values in published.values()]
        lines.append("| " + " | ".join(row) + " |")

    means = {}
    for d in detectors:
        per_key = [np.mean(auroc[k, d]) for k in keys if auroc[k, d]]
        if per_key:
            complete = len(per_key) == len(keys)
            means[d] = (np.mean(per_key), "" if complete else f" ({len(per_key)}/{len(keys)})")
    best_mean = max((m for m, note in means.values() if not note), default=None)
    means = [
        "-" if d not in means else f"**{means[d][0]:.1f}**" if means[d][0] == best_mean else f"{means[d][0]:.1f}{means[d][1]}"
        for d in detectors
    ]
    means += [f"{np.mean([v[k] for k in keys if k < len(v)]):.1f}" for v in published.values()]
    lines.append("| mean | " + " | ".join(means) + " |")
    seconds = []
    for d in detectors:
        done = [r for r in records if r["detector"] == d and "auroc" in r]
        fit, score = sum(r["fit_seconds"] for r in done), sum(r["score_seconds"] for r in done)
        seconds.append(f"{fit:.0f} + {score:.0f}")
    lines.append("| fit + score s | " + " | ".join(seconds + ["-"] * len(published)) + " |")

    failures = [r for r in records if "error" in r]
    if failures:
        lines += ["", "Failed runs:"]
        lines += [
            f"- {r['detector']}, {_KEY_NAMES[protocol]} {r['key']}, seed {r['seed']}: {r['error']}"
            for r in failures
        ]
    return "\n".join(lines)


def write_results(out, budget, records):
    """Write ``results.json`` and ``results.md`` atomically (a crash never leaves half a file)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "results.json", json.dumps({"budget": budget, "records": records}, indent=1))
    _write_atomic(out / "results.md", f"Budget: {json.dumps(budget)}\n\n{format_tables(records)}\n")


def _write_atomic(path, text):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plot_results(records, path):
    """AUROC per task and detector as grouped bars, one panel per data set x protocol.

    Returns the path written, or ``None`` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = defaultdict(list)
    for r in records:
        if "auroc" in r:
            groups[r["dataset"], r["protocol"]].append(r)
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)), squeeze=False)
    for ax, ((dataset, protocol), rows) in zip(axes[:, 0], sorted(groups.items())):
        detectors = list(dict.fromkeys(r["detector"] for r in rows))
        keys = sorted({r["key"] for r in rows})
        width = 0.8 / len(detectors)
        for i, d in enumerate(detectors):
            means = [np.mean([r["auroc"] for r in rows if r["key"] == k and r["detector"] == d] or [np.nan]) for k in keys]
            ax.bar(np.arange(len(keys)) + i * width - 0.4 + width / 2, means, width, label=d)
        ax.set_xticks(range(len(keys)), [str(k) for k in keys])
        ax.set_xlabel(_KEY_NAMES[protocol])
        ax.set_ylabel("AUROC")
        ax.set_ylim(0.4, 1.0)
        ax.set_title(f"{dataset}, {protocol}")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
