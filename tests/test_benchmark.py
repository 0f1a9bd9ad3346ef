import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from skgeoad import benchmark
from skgeoad.benchmark import (
    PCAReconstruction,
    PyODDetector,
    cli,
    make_detector,
    make_tasks,
    run_all,
    run_one,
)
from skgeoad._torch import use_mixed_precision
from skgeoad.benchmark.protocols import stratified_subset

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


def test_all_rules_scores_every_rule_from_one_fit(tmp_path):
    out = tmp_path / "results"
    # One run after the other, in this process: a run on a worker's single thread rounds
    # otherwise than the check below on this process's threads.
    argv = ["--classes", "1", "--detectors", "geometric,iforest", *QUICK_GEOMETRIC, "--all-rules",
            "--n-jobs", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert benchmark.main(argv) == 0
    records = {r["detector"]: r for r in read_records(out)}
    assert set(records) == {"geometric", "geometric[simplified]", "geometric[knn]", "geometric[combined]", "iforest"}
    header = "| class | geometric | geometric[simplified] | geometric[knn] | geometric[combined] | iforest |"
    assert header in (out / "results.md").read_text()
    # The same fit, each rule's scores as score_samples gives them after set_params.
    X_train, y_train, X_test, y_test = benchmark.load_rows("digits")
    (task,) = make_tasks("digits", "one-vs-all", X_train, y_train, X_test, y_test, classes=[1])
    detector = make_detector("geometric", cli.parse_settings(QUICK_GEOMETRIC[1::2], ["geometric"])["geometric"])
    detector.set_params(random_state=0).fit(task.X_train)
    for rule in ("dirichlet", "simplified", "knn", "combined"):
        name = "geometric" if rule == "dirichlet" else f"geometric[{rule}]"
        auroc = roc_auc_score(task.is_normal, detector.set_params(score_type=rule).score_samples(task.X_test))
        assert records[name]["auroc"] == pytest.approx(auroc, abs=1e-9)
        assert records[name]["fit_seconds"] == records["geometric"]["fit_seconds"]
        assert records[name]["fitted"] == records["geometric"]["fitted"]
    assert records["geometric"]["fitted"]["n_features_in_"] == 64
    assert records["geometric"]["fitted"]["offset_"] == pytest.approx(detector.offset_)


def test_records_keep_what_the_fit_decided():
    X_train, y_train, X_test, y_test = benchmark.load_rows("digits")
    (task,) = make_tasks("digits", "one-vs-all", X_train, y_train, X_test, y_test, classes=[0])
    settings = {"latent_dim": 8, "epochs": 2, "n_seeds": 2, "search": "latent", "device": "cpu"}
    record = run_one(task, "adgan", make_detector("adgan", settings), 0)
    assert "error" not in record
    assert record["fitted"]["critic_orientation_"] in (1, -1)
    assert record["fitted"]["epochs_"] == 2 and record["fitted"]["latent_dim_"] == 8
    # What mixed_precision="auto" resolved to on this machine.
    assert record["fitted"]["mixed_precision_"] is use_mixed_precision("auto", torch.device("cpu"))
    assert all(isinstance(value, (bool, int, float, str)) for value in record["fitted"].values())
    json.dumps(record)  # the results file takes it as it is


def test_all_rules_resumes_runs_that_lack_their_other_rules(tmp_path):
    out = tmp_path / "results"
    argv = ["--classes", "0", "--detectors", "subcluster,iforest", "--set", "subcluster.epochs=2",
            "--set", "subcluster.device=cpu", "--out", str(out), "--quiet"]  # fmt: skip
    assert benchmark.main(argv) == 0
    assert {r["detector"] for r in read_records(out)} == {"subcluster", "iforest"}
    assert benchmark.main([*argv, "--all-rules", "--resume"]) == 0
    records = read_records(out)
    names = sorted(r["detector"] for r in records)
    assert names == ["iforest", "subcluster", "subcluster[kl]", "subcluster[knn]", "subcluster[odin]"]
    assert {r["params"]["score_type"] for r in records if r["detector"].startswith("subcluster")} == {
        "'msp'", "'kl'", "'knn'", "'odin'"
    }
    # Complete now: a second resume runs nothing.
    assert benchmark.main([*argv, "--all-rules", "--resume"]) == 0
    assert sorted(r["detector"] for r in read_records(out)) == names


def test_a_rule_with_non_finite_scores_fails_its_own_record_only():
    from skgeoad.benchmark.runner import _rule_result, _split_by_rule

    record = {"detector": "geometric", "auroc": 0.9, "aupr": 0.8,
              "by_rule": {"knn": _rule_result(None, np.array([0.1, np.nan]))}}  # fmt: skip
    main, knn = _split_by_rule(record)
    assert main == {"detector": "geometric", "auroc": 0.9, "aupr": 0.8}
    assert knn == {"detector": "geometric[knn]", "error": "ValueError: 1 scores are not finite."}


def test_table_tells_a_failed_run_from_one_not_reported_yet():
    # results.md is rewritten as runs finish: a run still going is not a failure.
    from skgeoad.benchmark.report import format_tables

    base = {"dataset": "digits", "protocol": "one-vs-all", "seed": 0, "fit_seconds": 1, "score_seconds": 1}
    records = [
        {**base, "key": 0, "detector": "iforest", "auroc": 0.9},
        {**base, "key": 0, "detector": "adgan", "auroc": 0.8},
        {**base, "key": 1, "detector": "iforest", "auroc": 0.7},
        {**base, "key": 1, "detector": "adgan", "error": "RuntimeError: diverged"},
        {**base, "key": 2, "detector": "iforest", "auroc": 0.6},  # adgan's class 2 still running
    ]
    rows = {line.split(" | ")[0]: line for line in format_tables(records).splitlines() if line.startswith("| ")}
    assert rows["| 1"].endswith("| failed |") and rows["| 2"].endswith("| - |")
    assert "adgan, class 1, seed 0: RuntimeError: diverged" in format_tables(records)
    assert "adgan, class 2" not in format_tables(records)


def test_subcluster_kmeans_ignores_the_protocols_labels():
    from skgeoad.benchmark.runner import _accepted_fit_params

    X_train, y_train, X_test, y_test = benchmark.load_rows("digits")
    task = make_tasks("digits", "multi-normal", X_train, y_train, X_test, y_test, max_normal_classes=3)[2]
    assert set(task.fit_params) == {"cluster_labels"}
    unlabelled = make_detector("subcluster-kmeans", {"n_clusters": 3, "epochs": 2, "score_type": "knn", "device": "cpu"})
    assert _accepted_fit_params(unlabelled, task.fit_params) == {}
    assert _accepted_fit_params(make_detector("subcluster"), task.fit_params) == task.fit_params
    record = run_one(task, "subcluster-kmeans", unlabelled, 0)
    assert "error" not in record and record["auroc"] > 0.9  # measured 0.99


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
    # 500 components pass PCAReconstruction's checks but not a fit on 20 rows:
    # a run that fails, not a command line that does.
    argv = ["--classes", "3", "--detectors", "iforest,pca", "--max-train", "20", "--n-test", "200",
            "--seeds", "2", "--set", "pca.n_components=500", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    assert benchmark.main(argv) == 1  # failures are reported, the other runs go on
    records = read_records(tmp_path)
    good = [r for r in records if "auroc" in r]
    assert {(r["detector"], r["seed"]) for r in good} == {("iforest", 0), ("iforest", 1)}
    assert all(r["n_train"] == 20 and r["n_test"] == 200 for r in good)
    assert good[0]["auroc"] != good[1]["auroc"]  # the seed reaches the detector
    assert {(r["detector"], r["seed"]) for r in records if "error" in r} == {("pca", 0), ("pca", 1)}
    assert "n_components=500" in (tmp_path / "results.md").read_text()
    # --resume keeps finished runs and redoes only the failed ones.
    fixed = [a if a != "pca.n_components=500" else "pca.n_components=5" for a in argv]
    assert benchmark.main(fixed + ["--resume"]) == 0
    records = read_records(tmp_path)
    assert sum("auroc" in r for r in records) == 4
    assert [r["auroc"] for r in records if r["detector"] == "iforest" and "auroc" in r] == [
        r["auroc"] for r in good
    ]
    # Nothing left to run is not a mistake: the results are complete.
    capsys.readouterr()
    assert benchmark.main(fixed + ["--resume"]) == 0
    assert "all 4 runs are already in" in capsys.readouterr().err
    assert read_records(tmp_path) == records


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


@pytest.fixture
def no_runs(monkeypatch):
    """Fail the test if any run starts: every mistake must be found before the first."""

    def run_all(*args, **kwargs):
        pytest.fail("a run started despite a bad command line")

    monkeypatch.setattr(cli, "run_all", run_all)


def usage_error(argv, capsys):
    """The one line a bad command line prints, after checking it exits 2 and prints nothing else."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("skgeoad-benchmark: error: ")
    return err.strip()


ALL_DIGITS = "0,1,2,3,4,5,6,7,8,9"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-train", "-1"], "argument --max-train: expected an integer >= 1, got '-1'"),
        (["--n-test", "0"], "argument --n-test: expected an integer >= 1, got '0'"),
        (["--seeds", "0"], "argument --seeds: expected an integer >= 1, got '0'"),
        (["--n-jobs", "0"], "argument --n-jobs: expected an integer >= 1 or -1 or auto, got '0'"),
        (["--contamination", "1.5"], "argument --contamination: expected a number in [0, 1), got '1.5'"),
        (["--detectors", ""], "argument --detectors: expected comma-separated detector names, got ''"),
        (["--detectors", "iforst"], "unknown detector 'iforst' (did you mean 'iforest'?); choose from adgan,"),
        (["--dataset", "digts"], "unknown data set 'digts' (did you mean 'digits'?)"),
        (["--classes", "0,x"], "--classes: digits has no class x; its classes are 0, 1, 2,"),
        (["--classes", ","], "argument --classes: expected comma-separated classes, got ','"),
        (["--classes", "42"], "--classes: digits has no class 42; its classes are 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
        (["--set", "widen_factor=2"], "--set expects DETECTOR.PARAM=VALUE, got 'widen_factor=2'"),
        (["--set", "ocsvm.nu=0.5"], "--set ocsvm.nu=0.5: 'ocsvm' is not in --detectors; --detectors are iforest"),
        (["--set", "iforst.n_estimators=5"], "'iforst' is not a detector (did you mean 'iforest'?)"),
        (["--set", "iforest.no_such_param=1"],
         "--set: iforest has no parameter 'no_such_param'; its parameters are bootstrap, contamination,"),
        (["--set", "iforest.n_estimator=5"], "has no parameter 'n_estimator' (did you mean 'n_estimators'?)"),
        (["--set", "iforest.n_estimators=0"],
         "--set: The 'n_estimators' parameter of IsolationForest must be an int in the range [1, inf)"),
        (["--n-test", "5"], "--n-test 5: the test set of digits has 10 classes"),
        (["--data-home", "/no/such/folder"], "--data-home /no/such/folder: no such folder"),
        (["--protocol", "contaminated", "--contamination", "0.95", "--classes", "0"],
         "--protocol contaminated on digits: Too few images of the other classes for 1691 anomalies"),
        (["--protocol", "multi-normal", "--anomaly-classes", ALL_DIGITS],
         "--protocol multi-normal on digits: No class left to be normal: anomaly_classes [0, 1,"),
        (["--protocol", "multi-normal", "--anomaly-classes", "3,42"],
         "--anomaly-classes: digits has no class 42; its classes are 0,"),
        (["--protocol", "multi-normal", "--classes", "1"], "--classes does not apply to --protocol multi-normal"),
        (["--anomaly-classes", "5"], "--anomaly-classes applies to --protocol multi-normal only"),
        (["--scheduler", "localhost:8786"], "--scheduler needs --backend dask or ray"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line_before_any_run(argv, message, tmp_path, capsys, no_runs):
    out = tmp_path / "results"
    error = usage_error(["--detectors", "iforest", "--out", str(out), "--quiet", *argv], capsys)
    assert message in error
    assert not out.exists()  # a mistake leaves nothing behind


def test_unwritable_out_is_found_before_the_first_run(tmp_path, capsys, no_runs):
    (tmp_path / "file").write_text("")
    argv = ["--detectors", "iforest", "--classes", "0", "--quiet", "--out"]
    assert "--out" in usage_error([*argv, str(tmp_path / "file" / "sub")], capsys)
    assert "that is a file, not a folder" in usage_error([*argv, str(tmp_path / "file")], capsys)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_out_is_found_before_the_first_run(tmp_path, capsys, no_runs):
    (tmp_path / "read-only").mkdir(mode=0o500)
    argv = ["--detectors", "iforest", "--classes", "0", "--quiet", "--out", str(tmp_path / "read-only")]
    assert "cannot write there" in usage_error(argv, capsys)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"records": [', "results.json is not valid JSON (Expecting value: line 1"),
        (b'{"records": 3}', "results.json is not a skgeoad-benchmark results file"),
        (b'{"records": [{"detector": "iforest"}]}', "is not a skgeoad-benchmark results file"),
        (b"\xff\xfe", "results.json is not valid JSON"),
    ],
)
def test_resume_from_a_corrupt_file_is_a_usage_error(content, message, tmp_path, capsys, no_runs):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    argv = ["--detectors", "iforest", "--classes", "0", "--quiet", "--out", str(tmp_path), "--resume"]
    error = usage_error(argv, capsys)
    assert f"--resume: {path}" in error and message in error
    assert path.read_bytes() == content  # left as it was, not overwritten


def test_missing_data_set_stops_before_any_run(tmp_path, capsys, no_runs):
    (tmp_path / "data").mkdir()
    argv = ["--dataset", "digits,cifar10", "--data-home", str(tmp_path / "data"), "--detectors", "iforest",
            "--quiet", "--out", str(tmp_path / "results")]  # fmt: skip
    error = usage_error(argv, capsys)
    assert "--dataset cifar10: data_batch_1 not found; looked in: " in error
    assert "CIFAR cannot be downloaded here" in error
    assert not (tmp_path / "results").exists()


def test_pyod_peer_without_pyod_is_a_usage_error(capsys, no_runs):
    try:
        import pyod  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PyOD is installed")
    error = usage_error(["--detectors", "iforest,pyod-knn", "--quiet"], capsys)
    assert "--detectors pyod-knn: PyOD peers need PyOD: pip install pyod" in error


def test_interrupted_run_keeps_its_results_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    def run_all(jobs, *, on_record, **kwargs):
        on_record(run_one(*jobs[0]))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_all", run_all)
    argv = ["--detectors", "iforest", "--classes", "0,1", "--quiet", "--out", str(tmp_path)]
    assert benchmark.main(argv) == 130
    assert "the 1 finished runs are in" in capsys.readouterr().err
    assert len(read_records(tmp_path)) == 1


def test_make_detector_checks_names_and_values():
    with pytest.raises(ValueError, match=r"ocsvm has no parameter 'nus' \(did you mean 'nu'\?\)"):
        make_detector("ocsvm", {"nus": 0.1})
    with pytest.raises(ValueError, match="'nu' parameter of OneClassSVM"):
        make_detector("ocsvm", {"nu": 2.0})
    with pytest.raises(ValueError, match="'n_components' parameter of PCAReconstruction"):
        make_detector("pca", {"n_components": -3})
    with pytest.raises(ValueError, match="Unknown detector 'pcaa' \\(did you mean 'pca'\\?\\)"):
        make_detector("pcaa")


def test_pyod_parameters_are_checked_against_the_pyod_class():
    pytest.importorskip("pyod")
    assert make_detector("pyod-knn", {"n_neighbors": 3}).model_params == {"n_neighbors": 3}
    with pytest.raises(ValueError, match="did you mean 'n_neighbors'"):
        make_detector("pyod-knn", {"n_neighbours": 3})


def test_stratified_subset_of_almost_everything_and_of_too_little():
    y = np.repeat(np.arange(10), 90)
    kept = stratified_subset(y, 895)  # 5 left out: fewer than the classes, train_test_split refuses
    assert len(np.unique(kept)) == 895
    assert np.bincount(y[stratified_subset(y, 100)]).tolist() == [10] * 10
    with pytest.raises(ValueError, match="9 rows cannot hold one of each of the 10 classes"):
        stratified_subset(y, 9)


def test_make_tasks_names_a_missing_class():
    y = np.repeat(np.arange(3), 5)
    X = np.arange(15)[:, None].astype(float)
    with pytest.raises(ValueError, match=r"classes: y_train has no class 7; its classes are \[0, 1, 2\]"):
        make_tasks("toy", "one-vs-all", X, y, X, y, classes=[0, 7])
    with pytest.raises(ValueError, match="No class left to be normal"):
        make_tasks("toy", "multi-normal", X, y, X, y, anomaly_classes=[0, 1, 2])


def test_all_rules_resolves_an_auto_score_type_and_resumes_complete(tmp_path):
    # IterativeClusterAEDetector's score_type="auto" is one of its rules by another name.
    out = tmp_path / "results"
    argv = ["--protocol", "contaminated", "--classes", "0", "--detectors", "icae", "--set", "icae.epochs=2",
            "--set", "icae.device=cpu", "--all-rules", "--out", str(out), "--quiet"]  # fmt: skip
    assert benchmark.main(argv) == 0
    records = {r["detector"]: r for r in read_records(out)}
    assert set(records) == {"icae", "icae[mse]"} and "error" not in records["icae"]
    assert (records["icae"]["rule"], records["icae[mse]"]["rule"]) == ("cosine", "mse")
    before = read_records(out)
    assert benchmark.main([*argv, "--resume"]) == 0
    assert read_records(out) == before  # complete: nothing ran again


def test_resume_counts_an_older_auto_record_complete_when_one_rule_is_its_own():
    # Records written before runs kept their resolved "rule": score_type="auto" is one
    # of the rules, so a run lacking one "detector[rule]" record is complete.
    detectors = {"icae": make_detector("icae"), "icae-geometric": make_detector("icae-geometric")}
    run = {"dataset": "digits", "protocol": "contaminated", "key": 0, "seed": 0}
    records = [{**run, "detector": "icae"}, {**run, "detector": "icae[mse]"}, {**run, "detector": "icae-geometric"}]
    assert cli._with_every_rule(records, detectors) == records
    assert cli._with_every_rule(records[:1] + records[2:], detectors) == records[2:]  # icae lacks both
