"""
=================================
Saving and loading a fitted model
=================================

Fitted detectors pickle with everything they learned, so ``joblib.dump`` and
``joblib.load`` round-trip them. Tensors are stored on the CPU: a model fitted
on a GPU loads on a machine without one (with a warning) and scores there.
"""

import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np

from skgeoad import GeometricTransformDetector
from skgeoad.datasets import load_digits_split

X_train, y_train, X_test, y_test = load_digits_split()
detector = GeometricTransformDetector(transformations="rotations", widen_factor=1, epochs=10, random_state=0)
detector.fit(X_train[y_train == 7])

path = Path(tempfile.mkdtemp()) / "detector.joblib"
joblib.dump(detector, path)
loaded = joblib.load(path)
print(f"{path.stat().st_size / 1024:.0f} KiB on disk, fitted on {detector.device_}, loaded on {loaded.device_}")

before, after = detector.score_samples(X_test), loaded.score_samples(X_test)
print("identical scores:", np.array_equal(before, after))

# %%
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(before, after, s=6, c=(y_test == 7), cmap="coolwarm")
ax.set_xlabel("score before saving")
ax.set_ylabel("score after loading")
fig.tight_layout()
plt.show()
