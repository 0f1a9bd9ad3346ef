"""
===============================================
Tuning a detector with GridSearchCV and ROC AUC
===============================================

Detectors ignore ``y`` in ``fit``, so ``GridSearchCV(scoring="roc_auc")`` can
pass inlier/outlier labels to its scorer: the detector trains on the
(contaminated) training folds and is judged by how well ``decision_function``
ranks the held-out fold. Here the data is digit 0 with 10% other digits mixed
in, and the search picks the transformation set.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skgeoad import GeometricTransformDetector
from skgeoad.datasets import contaminated, load_digits_split


def to_unit_range(X):
    """Any preprocessing step: here, pixel values from [0, 16] to [0, 1]."""
    return X / 16.0


X_train, y_train, _, _ = load_digits_split()
X, is_normal = contaminated(X_train.reshape(len(X_train), -1), y_train, 0, contamination=0.1)
y = np.where(is_normal, 1, -1)  # scikit-learn's outlier labels

pipeline = make_pipeline(
    FunctionTransformer(to_unit_range),
    GeometricTransformDetector(widen_factor=1, epochs=5, image_shape=(8, 8), random_state=0),
)
search = GridSearchCV(
    pipeline,
    {"geometrictransformdetector__transformations": ["rotations", "flips_rotations"]},
    scoring="roc_auc",
    cv=StratifiedKFold(3, shuffle=True, random_state=0),
)
search.fit(X, y)
print("best:", search.best_params_, f"AUROC {search.best_score_:.3f}")

# %%
results = search.cv_results_
names = [p["geometrictransformdetector__transformations"] for p in results["params"]]
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(names, results["mean_test_score"], xerr=results["std_test_score"])
ax.set_xlim(0.5, 1.0)
ax.set_xlabel("cross-validated AUROC")
fig.tight_layout()
plt.show()
