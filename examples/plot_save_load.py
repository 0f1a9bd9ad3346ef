"""
=================================
Saving and loading a fitted model
=================================

:func:`skgeoad.save` writes a fitted detector as data only: a zip archive of a
JSON manifest (format and library versions, the class, its parameters, every
fitted attribute) and ``.npy`` arrays (network weights included).
:func:`skgeoad.load` reads it back without executing anything from the file,
and refuses a file that is not one of ours, such as a pickle. Use it for
models you ship or receive.

``joblib.dump`` and ``joblib.load`` keep working too, for files you wrote
yourself: a pickle runs code when it is loaded.

Either way, tensors are stored on the CPU: a model fitted on a GPU loads on a
machine without one (with a warning) and scores there.
"""

import json
import tempfile
import zipfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np

import skgeoad
from skgeoad import GeometricTransformDetector
from skgeoad.datasets import load_digits_split

X_train, y_train, X_test, y_test = load_digits_split()
detector = GeometricTransformDetector(transformations="rotations", widen_factor=1, epochs=10, random_state=0)
detector.fit(X_train[y_train == 7])
folder = Path(tempfile.mkdtemp())

# %%
# The safe format
# ---------------
# ``load`` puts the model back where it was fitted when this machine has that
# device, else on the CPU; ``device="cpu"`` (or ``"cuda:1"``) chooses.

path = folder / "sevens.skgeoad"
skgeoad.save(detector, path)
loaded = skgeoad.load(path, device="cpu")
print(f"{path.stat().st_size / 1024:.0f} KiB on disk, fitted on {detector.device_}, loaded on {loaded.device_}")

before, after = detector.score_samples(X_test), loaded.score_samples(X_test)
print("identical scores:", np.array_equal(before, after))
print("identical predictions:", np.array_equal(detector.predict(X_test), loaded.predict(X_test)))

# %%
# The file is a plain zip archive; its manifest is readable JSON.

with zipfile.ZipFile(path) as archive:
    manifest = json.loads(archive.read("skgeoad-model.json"))
    n_arrays = sum(name.endswith(".npy") for name in archive.namelist())
print("format", manifest["format_version"], "written by", manifest["versions"])
print("estimator:", manifest["estimator"], "with", n_arrays, "arrays")
print("fitted attributes:", ", ".join(manifest["fitted"]))

# %%
# A pickle is refused, never run
# ------------------------------
# joblib round-trips the detector as well, but its file is a pickle: handing
# one to :func:`skgeoad.load` (a model file of unknown origin, renamed) is an
# error that names what it is.

pickled = folder / "sevens.joblib"
joblib.dump(detector, pickled)
print(f"joblib: {pickled.stat().st_size / 1024:.0f} KiB, identical scores:",
      np.array_equal(joblib.load(pickled).score_samples(X_test), before))  # fmt: skip
try:
    skgeoad.load(pickled)
except skgeoad.persistence.ModelFileError as error:
    print("refused:", error)

# %%
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(before, after, s=6, c=(y_test == 7), cmap="coolwarm")
ax.set_xlabel("score before saving")
ax.set_ylabel("score after skgeoad.load")
fig.tight_layout()
plt.show()
