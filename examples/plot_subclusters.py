"""
=================================================
Sub-clusters keep AUROC as the normal set grows
=================================================

Lee & Lee's Test 2: digits ``0..k-1`` are normal and digits 5-9 are
anomalies, for ``k = 1..5``. :class:`~skgeoad.SubClusterDetector` is told
which digit each normal image is (its sub-clusters); a one-class method sees
one heterogeneous normal set. (With a single sub-cluster, ``k = 1``, the
sub-cluster detector falls back to Euclidean k-NN in a PCA embedding.)
"""

import matplotlib.pyplot as plt
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from skgeoad import GeometricTransformDetector, SubClusterDetector
from skgeoad.datasets import load_digits_split, multi_normal

X_train, y_train, X_test, y_test = load_digits_split()
ks = range(1, 6)
auroc = {"subcluster MSP": [], "subcluster k-NN": [], "geometric (rotations)": [], "iforest": []}
for k in ks:
    X_normal, labels, X_eval, is_normal = multi_normal(X_train, y_train, X_test, y_test, range(k), range(5, 10))
    sub = SubClusterDetector(epochs=15, random_state=0).fit(X_normal, cluster_labels=labels)
    auroc["subcluster MSP"].append(roc_auc_score(is_normal, sub.score_samples(X_eval)))
    sub.set_params(score_type="knn")  # another score, no refit
    auroc["subcluster k-NN"].append(roc_auc_score(is_normal, sub.score_samples(X_eval)))
    geom = GeometricTransformDetector(transformations="rotations", widen_factor=1, epochs=10, random_state=0)
    auroc["geometric (rotations)"].append(roc_auc_score(is_normal, geom.fit(X_normal).score_samples(X_eval)))
    forest = IsolationForest(random_state=0).fit(X_normal.reshape(len(X_normal), -1))
    auroc["iforest"].append(roc_auc_score(is_normal, forest.score_samples(X_eval.reshape(len(X_eval), -1))))

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, values in auroc.items():
    ax.plot(list(ks), values, marker="o", label=name)
ax.set_xlabel("number of normal digits k")
ax.set_ylabel("AUROC (anomalies: 5-9)")
ax.legend()
fig.tight_layout()
plt.show()
