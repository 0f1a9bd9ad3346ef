"""
==========================================
Detectors side by side on one-vs-all tasks
==========================================

The benchmark harness's building blocks, used from Python: the one-vs-all
tasks of three digits, skgeoad's detectors next to scikit-learn's, AUROC per
task. ``skgeoad-benchmark`` runs the same thing from the command line.
"""

import matplotlib.pyplot as plt
import numpy as np

from skgeoad.benchmark import load_rows, make_detector, make_tasks, run_all

X_train, y_train, X_test, y_test = load_rows("digits")  # rows scaled to [-1, 1]
tasks = make_tasks("digits", "one-vs-all", X_train, y_train, X_test, y_test, classes=[1, 8, 9])
detectors = {
    "geometric": make_detector("geometric", {"widen_factor": 1, "transformations": "rotations", "epochs": 10}),
    "subcluster (k-NN)": make_detector("subcluster", {"score_type": "knn", "epochs": 10}),
    "iforest": make_detector("iforest"),
    "ocsvm": make_detector("ocsvm"),
}
jobs = [(task, name, detector, 0) for task in tasks for name, detector in detectors.items()]
records = run_all(jobs, progress=False)

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
width = 0.8 / len(detectors)
for i, name in enumerate(detectors):
    auroc = [next(r["auroc"] for r in records if r["detector"] == name and r["key"] == t.key) for t in tasks]
    ax.bar(np.arange(len(tasks)) + (i - 1.5) * width, auroc, width, label=name)
ax.set_xticks(range(len(tasks)), [f"digit {t.key}" for t in tasks])
ax.set_ylim(0.8, 1.0)
ax.set_ylabel("AUROC")
ax.legend(loc="lower left", fontsize="small")
fig.tight_layout()
plt.show()
