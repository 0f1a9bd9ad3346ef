import json

import numpy as np
import pytest

from skgeoad import benchmark
from skgeoad.benchmark import PCAReconstruction, PyODDetector, make_tasks, run_all

QUICK_GEOMETRIC = [
    "--set", "geometric.transformations='rotations'", "--set", "geometric.widen_factor=1",
    "--set", "geometric.epochs=3", "--set", "geometric.device=cpu",
]  # fmt: skip


def read_records(out):
    return json.loads((out / "results.json").read_text())["records"]


def test_cli_runs_two_digit_classes_and_writes_results(tmp_path, capsys):
    out = tmp_path / "results"
    code = benchmark.main(
        ["--classes", "0,1", "--detectors", "geometric,iforest,ocsvm", *QUICK_GEOMETRIC, "--out", str(out), "--quiet"]
    )
    assert code == 0
    records = read_records(out)
    assert {(r["detector"], r["key"]) for r in records} == {
        (d, c) for d in ("geometric", "iforest", "ocsvm") for c in (0, 1)
    }
    assert all(0.5 < r["auroc"] <= 1 and 0 < r["aupr"] <= 1 for r in records)
    assert all(r["fit_seconds"] > 0 and r["n_test"] == 899 for r in records)
    table = (out / "results.md").read_text()
    assert "| class | geometric | iforest | ocsvm |" in table and "| mean |" in table
    assert '"max_train": null' in table
    assert "### digits, one-vs-all" in capsys.readouterr().out


def test_contaminated_protocol_runs_the_iterative_detector(tmp_path):
    out = tmp_path / "results"
    argv = ["--protocol", "contaminated", "--contamination", "0.1", "--classes", "0", "--detectors",
            "icae,iforest", "--set", "icae.epochs=20", "--set", "icae.device=cpu", "--out", str(out), "--quiet"]  # fmt: skip
    assert benchmark.main(argv) == 0
    records = {r["detector"]: r for r in read_records(out)}
    assert records["icae"]["n_anomalies_in_train"] == 10
    # Measured: icae 1.00, iforest 1.00 on digit 0.
    assert records["icae"]["auroc"] > 0.95 and records["iforest"]["auroc"] > 0.95


def test_budget_failures_and_resume(tmp_path, capsys):
    argv = ["--dataset", "digits,cifar10", "--data-home", str(tmp_path / "none"), "--classes", "3",
            "--detectors", "iforest,pca", "--max-train", "20", "--n-test", "200", "--seeds", "2",
            "--set", "pca.n_components=-3", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    assert benchmark.main(argv) == 1  # failures are reported, the other runs go on
    records = read_records(tmp_path)
    good = [r for r in records if "auroc" in r]
    assert {(r["detector"], r["seed"]) for r in good} == {("iforest", 0), ("iforest", 1)}
    assert all(r["n_train"] == 20 and r["n_test"] == 200 for r in good)
    assert good[0]["auroc"] != good[1]["auroc"]  # the seed reaches the detector
    failed = {(r["dataset"], r["detector"]) for r in records if "error" in r}
    assert failed == {("digits", "pca"), ("cifar10", "iforest"), ("cifar10", "pca")}
    assert "CIFAR cannot be downloaded here" in (tmp_path / "results.md").read_text()
    # --resume keeps finished runs and redoes only the failed ones.
    fixed = [a if a != "pca.n_components=-3" else "pca.n_components=5" for a in argv]
    benchmark.main(fixed + ["--resume"])
    records = read_records(tmp_path)
    assert sum("auroc" in r for r in records) == 4
    assert [r["auroc"] for r in records if r["detector"] == "iforest" and "auroc" in r] == [
        r["auroc"] for r in good
    ]


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_parallel_runs_give_the_same_records(backend):
    rng = np.random.default_rng(0)
    X_train, y_train = rng.normal(size=(60, 5)), np.repeat([0, 1, 2], 20)
    X_train[y_train == 1] += 3
    tasks = make_tasks("toy", "one-vs-all", X_train, y_train, X_train, y_train)
    jobs = [(task, "pca", PCAReconstruction(n_components=2), 0) for task in tasks]
    sequential = run_all(jobs, n_jobs=1, progress=False)
    parallel = run_all(jobs, n_jobs=2, backend=backend, progress=False)
    key = lambda r: r["key"]  # noqa: E731
    for a, b in zip(sorted(sequential, key=key), sorted(parallel, key=key)):
        assert a["auroc"] == b["auroc"]


def test_protocol_tasks():
    y = np.repeat(np.arange(10), 30)
    X = np.arange(300)[:, None].astype(float)
    contaminated = make_tasks("toy", "contaminated", X, y, X, y, classes=[2], contamination=0.1, max_train=18)
    (task,) = contaminated
    assert len(task.X_train) == 20 and task.info["n_anomalies_in_train"] == 2
    multi = make_tasks("toy", "multi-normal", X, y, X, y, max_train=4)
    assert [t.key for t in multi] == [1, 2, 3, 4, 5]
    assert multi[2].info["normal_classes"] == [0, 1, 2] and multi[2].info["anomaly_classes"] == [5, 6, 7, 8, 9]
    assert list(multi[2].fit_params["cluster_labels"]) == [0] * 4 + [1] * 4 + [2] * 4
    assert multi[2].is_normal.sum() == 90 and len(multi[2].X_test) == 240


def test_pyod_peer_has_scikit_learns_sign():
    pytest.importorskip("pyod")
    rng = np.random.default_rng(0)
    detector = PyODDetector("knn.KNN", {"n_neighbors": 3}).fit(rng.normal(size=(50, 2)))
    inlier, outlier = detector.score_samples(np.array([[0.0, 0.0], [8.0, 8.0]]))
    assert inlier > outlier


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--detectors", "magic"])
    assert "unknown detectors ['magic']" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="DETECTOR.PARAM=VALUE"):
        benchmark.main(["--detectors", "iforest", "--set", "widen_factor=2"])
