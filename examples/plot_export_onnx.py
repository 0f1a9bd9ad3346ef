"""
=====================================
Serving a detector with ONNX Runtime
=====================================

:func:`skgeoad.export_onnx` writes a fitted detector's whole score as one ONNX
graph: raw rows in (the input ``score_samples`` takes), the learned scaling,
the reshaping to images, the transformations, the network and the score rule
inside, ``score_samples``, ``decision_function`` and ``predict`` out. A server
then scores with onnxruntime alone: no skgeoad, no torch.

Here a :class:`~skgeoad.GeometricTransformDetector` learns digit 7 (flips and
rotations, to keep the example quick; the 72 transformations export the same
way) with its Dirichlet score, is exported, and the exported model scores new
digits in a fresh onnxruntime session.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skgeoad import GeometricTransformDetector, export_onnx
from skgeoad.datasets import load_digits_split

X_train, y_train, X_test, y_test = load_digits_split()
# Servers send flat float32 rows: 64 pixels per 8x8 digit.
X_train = X_train.reshape(len(X_train), -1).astype(np.float32)
X_test = X_test.reshape(len(X_test), -1).astype(np.float32)

# The graph computes in float32: fitted with mixed_precision=False, the detector
# scores as the exported model does (with bf16, the default on CPUs that compute
# it natively, the two differ by bf16's rounding).
detector = GeometricTransformDetector(
    transformations="flips_rotations", widen_factor=1, epochs=5, mixed_precision=False, random_state=0
)
detector.fit(X_train[y_train == 7])

path = Path(tempfile.mkdtemp()) / "digit7.onnx"
export_onnx(detector, path)
print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, score_type={detector.score_type!r}")

# %%
# The serving side: onnxruntime and numpy only
# --------------------------------------------
# The batch axis is dynamic; the threshold travels in the outputs and in the
# model's metadata.
import onnxruntime  # noqa: E402

session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
print("input:", [(i.name, i.type, i.shape) for i in session.get_inputs()])
print("outputs:", [o.name for o in session.get_outputs()])
metadata = session.get_modelmeta().custom_metadata_map
print("offset:", metadata["skgeoad.offset"], "| rule:", metadata["skgeoad.decision_rule"])

scores, decision, labels = session.run(None, {"X": X_test})
one_row = session.run(["score_samples"], {"X": X_test[:1]})[0]

# %%
# Agreement with the detector
# ---------------------------
expected = detector.score_samples(X_test)
print(f"largest difference: {np.abs(scores - expected).max():.1e} "
      f"(relative {np.max(np.abs(scores - expected) / np.abs(expected)):.1e})")
print("same ranking:", np.array_equal(np.argsort(scores), np.argsort(expected)))
print("same labels:", np.array_equal(labels, detector.predict(X_test)))
print("one row alone:", np.allclose(one_row, expected[:1], rtol=1e-5))

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.scatter(expected, scores, s=6, c=(y_test == 7), cmap="coolwarm")
ax.axvline(detector.offset_, color="grey", lw=0.8, ls="--")
ax.set_xlabel("detector.score_samples (torch)")
ax.set_ylabel("exported model (onnxruntime)")
ax.set_title("digit 7 (red) vs the rest")
fig.tight_layout()
plt.show()
