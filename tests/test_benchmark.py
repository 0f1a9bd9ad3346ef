import json

import pytest

from skgeoad import benchmark


def test_cli_runs_two_digit_classes_and_writes_results(tmp_path, capsys):
    out = tmp_path / "results"
    benchmark.main(
        [
            "--classes", "0,1", "--detectors", "geometric,iforest,ocsvm",
            "--set", "geometric.transformations='rotations'", "--set", "geometric.widen_factor=1",
            "--set", "geometric.epochs=3", "--set", "geometric.device='cpu'", "--out", str(out),
        ]
    )  # fmt: skip
    records = json.loads((out / "results.json").read_text())["records"]
    assert {(r["detector"], r["normal_class"]) for r in records} == {
        (d, c) for d in ("geometric", "iforest", "ocsvm") for c in (0, 1)
    }
    assert all(0.5 < r["auroc"] <= 1 and 0 < r["aupr"] <= 1 for r in records)
    assert all(r["fit_seconds"] > 0 and r["n_test"] == 899 for r in records)
    table = (out / "results.md").read_text()
    assert "| mean |" in table and "max_train=None" in table
    assert "| class | geometric | iforest | ocsvm |" in capsys.readouterr().out


def test_max_train_and_n_test_budget(tmp_path):
    benchmark.main(["--classes", "3", "--detectors", "iforest", "--max-train", "20", "--n-test", "200",
                    "--out", str(tmp_path)])  # fmt: skip
    (record,) = json.loads((tmp_path / "results.json").read_text())["records"]
    assert record["n_train"] == 20 and record["n_test"] == 200


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--detectors", "magic"])
    assert "unknown detectors ['magic']" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="DETECTOR.PARAM=VALUE"):
        benchmark.main(["--detectors", "iforest", "--set", "widen_factor=2"])
