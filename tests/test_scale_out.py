"""The benchmark on real clusters (a Dask LocalCluster of processes, Ray) and one GPU per run."""

import json
import os

import numpy as np
import pytest
from sklearn.base import BaseEstimator, OutlierMixin

from skgeoad import benchmark
from skgeoad.benchmark import cli, cluster, make_tasks, run_all, runner
from skgeoad.benchmark.devices import assign_device, gpu_turns

# A tiny grid: two digits, isolation forest and one deep detector for one epoch.
GRID = [
    "--dataset", "digits", "--classes", "0,1", "--detectors", "iforest,geometric",
    "--set", "geometric.epochs=1", "--set", "geometric.widen_factor=1",
    "--set", "geometric.transformations='rotations'", "--set", "geometric.device=cpu",
    "--n-jobs", "2", "--quiet",
]  # fmt: skip


def aurocs(out):
    records = json.loads((out / "results.json").read_text())["records"]
    assert all("error" not in r for r in records), records
    return {(r["detector"], r["key"], r["seed"]): r["auroc"] for r in records}


@pytest.fixture(scope="module")
def loky_aurocs(tmp_path_factory):
    out = tmp_path_factory.mktemp("loky")
    assert benchmark.main([*GRID, "--backend", "loky", "--out", str(out)]) == 0
    return aurocs(out)


def no_dask_client():
    from distributed import default_client

    try:
        default_client()
    except ValueError:  # "No clients found"
        return True
    return False


def test_dask_local_cluster_gives_lokys_results_and_is_closed(tmp_path, loky_aurocs):
    pytest.importorskip("distributed")
    out = tmp_path / "dask"
    assert benchmark.main([*GRID, "--backend", "dask", "--out", str(out)]) == 0
    assert aurocs(out) == loky_aurocs  # same seeds, same threads: the same numbers
    assert len(loky_aurocs) == 4
    assert no_dask_client()


def test_dask_joins_a_running_scheduler_and_leaves_it_running(tmp_path, loky_aurocs):
    distributed = pytest.importorskip("distributed")
    # Threads, to start quickly: the point is joining a scheduler someone else runs.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as running:
        out = tmp_path / "joined"
        argv = ["--classes", "0,1", "--detectors", "iforest", "--n-jobs", "2", "--quiet", "--backend",
                "dask", "--scheduler", running.scheduler_address, "--out", str(out)]  # fmt: skip
        assert benchmark.main(argv) == 0
        assert aurocs(out) == {k: v for k, v in loky_aurocs.items() if k[0] == "iforest"}
        with distributed.Client(running) as client:  # still up, its workers too
            assert len(client.scheduler_info()["workers"]) == 2


def test_dask_cluster_is_closed_when_interrupted_and_its_workers_malloc_untouched(tmp_path, monkeypatch, capsys):
    pytest.importorskip("distributed")
    seen = {}

    def interrupted(jobs, **kwargs):
        from distributed import default_client

        client = default_client()
        seen["workers"] = len(client.scheduler_info()["workers"])
        seen["trim"] = set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values())
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_all", interrupted)
    argv = ["--detectors", "iforest", "--classes", "0,1,2", "--n-jobs", "2", "--backend", "dask",
            "--quiet", "--out", str(tmp_path)]  # fmt: skip
    assert benchmark.main(argv) == 130
    assert seen["workers"] == 2  # --n-jobs workers
    assert seen["trim"] == {None}  # Dask's setting made torch 4-6x slower
    assert no_dask_client()


def test_unreachable_scheduler_is_a_usage_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("distributed")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    argv = ["--detectors", "iforest", "--classes", "0", "--backend", "dask", "--scheduler",
            "tcp://127.0.0.1:9", "--quiet", "--out", str(tmp_path)]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(argv)
    assert exit_info.value.code == 2
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in capsys.readouterr().err


def test_missing_backend_package_is_a_usage_error(tmp_path, monkeypatch, capsys):
    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name: None if name == "ray" else real_find_spec(name)
    )
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--detectors", "iforest", "--backend", "ray", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "--backend ray needs ray: pip install 'ray' (or 'skgeoad[ray]')" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_ray_gives_lokys_results_and_is_shut_down(tmp_path, loky_aurocs):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    assert benchmark.main([*GRID, "--backend", "ray", "--out", str(out)]) == 0
    assert aurocs(out) == loky_aurocs
    assert not ray.is_initialized()


# -- one GPU per run, tested without GPUs ----------------------------------------


def test_gpu_turns_skip_runs_that_cannot_move():
    devices = ["auto", None, "auto", "cpu", "cuda", "cuda:1", "auto"]
    turns = gpu_turns(devices)
    assert turns == [0, None, 1, None, 2, None, 3]
    assigned = [assign_device(d, t, n_gpus=2) for d, t in zip(devices, turns)]
    assert assigned == ["cuda:0", None, "cuda:1", "cpu", "cuda:0", "cuda:1", "cuda:1"]
    assert [assign_device(d, t, n_gpus=0) for d, t in zip(devices, turns)] == devices
    assert [assign_device("auto", t, n_gpus=3) for t in range(7)] == [f"cuda:{k % 3}" for k in range(7)]


class DeviceProbe(OutlierMixin, BaseEstimator):
    """Remembers the device it was given; fits anywhere, so no GPU is needed."""

    def __init__(self, device="auto", random_state=None):
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None):
        self.fitted_on_ = self.device
        return self

    def score_samples(self, X):
        return -np.abs(np.asarray(X)[:, 0])


@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "threading")])
def test_runs_are_spread_over_the_gpus_an_explicit_device_wins(n_jobs, backend, monkeypatch):
    monkeypatch.setattr(runner, "gpu_count", lambda: 3)
    X = np.arange(40, dtype=float)[:, None]
    y = np.repeat([0, 1], 20)
    (task,) = make_tasks("toy", "one-vs-all", X, y, X, y, classes=[0])
    jobs = [(task, "probe", DeviceProbe(), seed) for seed in range(4)]
    jobs += [(task, "cpu", DeviceProbe(device="cpu"), 0), (task, "pinned", DeviceProbe(device="cuda:1"), 0)]
    records = run_all(jobs, n_jobs=n_jobs, backend=backend, progress=False)
    device = {(r["detector"], r["seed"]): r["params"]["device"] for r in records}
    assert [device["probe", seed] for seed in range(4)] == ["'cuda:0'", "'cuda:1'", "'cuda:2'", "'cuda:0'"]
    assert device["cpu", 0] == "'cpu'" and device["pinned", 0] == "'cuda:1'"


def test_no_gpu_leaves_the_device_alone(monkeypatch):
    monkeypatch.setattr(runner, "gpu_count", lambda: 0)
    X = np.arange(40, dtype=float)[:, None]
    (task,) = make_tasks("toy", "one-vs-all", X, np.repeat([0, 1], 20), X, np.repeat([0, 1], 20), classes=[1])
    (record,) = run_all([(task, "probe", DeviceProbe(), 0)], progress=False)
    assert record["params"]["device"] == "'auto'"


def test_ray_address_where_nothing_listens_is_a_usage_error_not_a_hang(tmp_path, capsys):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as sock:  # a port just freed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["--detectors", "iforest", "--classes", "0", "--backend", "ray", "--scheduler",
            f"127.0.0.1:{port}", "--quiet", "--out", str(tmp_path / "r")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--scheduler 127.0.0.1:{port}: cannot connect (nothing answers at 127.0.0.1:{port}" in err
    assert err.count("\n") == 1
