"""
============================================================
The geometric transformations, and which ones a class learns
============================================================

:class:`~skgeoad.transforms.GeometricTransformations` holds Golan & El-Yaniv's
72 transformations (flip x translation x rotation) as index tables. Below:
one digit under all 72, then how often the classifier of a fitted detector
recognises each transformation of held-out normal images and of anomalies
(``transformation_proba``). Symmetric digits make some transformations
indistinguishable; anomalies confuse the classifier everywhere.
"""

import matplotlib.pyplot as plt
import torch

from skgeoad import GeometricTransformDetector
from skgeoad.datasets import load_digits_split
from skgeoad.transforms import GeometricTransformations

X_train, y_train, X_test, y_test = load_digits_split()
transformations = GeometricTransformations(8, 8, "all")
image = torch.as_tensor(X_test[y_test == 4][0], dtype=torch.float32).reshape(1, 1, 64)
views = transformations.expand(image)[:, 0].numpy()

fig, axes = plt.subplots(6, 12, figsize=(9, 4.8))
for ax, view, params in zip(axes.flat, views, transformations.transformation_params):
    ax.imshow(view, cmap="gray_r")
    ax.set_title("{}{},{} r{}".format("f " if params[0] else "", *params[1:]), fontsize=6)
    ax.axis("off")
fig.suptitle("flip, (tx, ty) shift, quarter turns")
fig.tight_layout()

# %%
detector = GeometricTransformDetector(widen_factor=1, random_state=0).fit(X_train[y_train == 4])
recognised = {
    "held-out 4s": detector.transformation_proba(X_test[y_test == 4]).diagonal(axis1=1, axis2=2).mean(0),
    "other digits": detector.transformation_proba(X_test[y_test != 4][:150]).diagonal(axis1=1, axis2=2).mean(0),
}
fig, ax = plt.subplots(figsize=(9, 3))
for name, values in recognised.items():
    ax.plot(values, marker=".", label=name)
ax.set_xlabel("transformation label (36 flip + 12 tx + 4 ty + rotation)")
ax.set_ylabel("probability of the right label")
ax.legend()
fig.tight_layout()
plt.show()
