"""Write the reference model file that ``tests/test_persistence.py`` keeps loading.

``reference_geometric.skgeoad`` is a GEOM detector (the four rotations, a
WRN-4-1, one epoch) fitted on the 178 zeros of scikit-learn's 8x8 digits,
saved by ``skgeoad.save``; ``reference_geometric_scores.json`` holds its
scores (both rules), decisions and predictions on the first 8 digits.
The test checks that every later version of skgeoad loads that file and
scores those rows to the same values: a reader that stops understanding
format version 1 fails it.

Regenerate only when the format changes on purpose (a new format version;
keep the old file too, renamed, so that the old format stays tested)::

    python tests/data/make_reference_model.py
"""

import json
from pathlib import Path

from sklearn.datasets import load_digits

import skgeoad

HERE = Path(__file__).parent
MODEL, SCORES = HERE / "reference_geometric.skgeoad", HERE / "reference_geometric_scores.json"
PARAMS = dict(transformations="rotations", depth=4, widen_factor=1, epochs=1, device="cpu", random_state=0)


def reference_rows():
    """The fitted samples and the scored rows (raw digits, values 0-16)."""
    X, y = load_digits(return_X_y=True)
    return X[y == 0], X[:8]


def main():
    X_fit, X_rows = reference_rows()
    detector = skgeoad.GeometricTransformDetector(**PARAMS).fit(X_fit)
    skgeoad.save(detector, MODEL)
    expected = {"format_version": skgeoad.persistence.FORMAT_VERSION, "skgeoad": skgeoad.__version__}
    for rule in ("dirichlet", "simplified"):
        detector.set_params(score_type=rule)
        expected[rule] = {
            "score_samples": detector.score_samples(X_rows).tolist(),
            "decision_function": detector.decision_function(X_rows).tolist(),
            "predict": detector.predict(X_rows).tolist(),
        }
    SCORES.write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {MODEL} ({MODEL.stat().st_size / 1024:.0f} KiB) and {SCORES}")


if __name__ == "__main__":
    main()
