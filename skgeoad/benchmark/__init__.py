"""The benchmark harness: the papers' protocols, peers side by side, scale-out.

``skgeoad-benchmark`` (:func:`main`) is the command; the pieces are usable
from Python too: :func:`make_tasks` builds a protocol's tasks, :func:`run_all`
runs detectors on them (through joblib; :func:`connect` starts or joins the
Dask or Ray cluster it may run on), :func:`format_tables` and
:func:`write_results` report.
"""

from .cli import main
from .cluster import connect
from .devices import assign_device, gpu_turns
from .peers import DETECTORS, PCAReconstruction, PyODDetector, make_detector
from .protocols import PROTOCOLS, Task, load_rows, make_tasks
from .report import PUBLISHED, format_tables, plot_results, write_results
from .runner import run_all, run_one

__all__ = [
    "DETECTORS", "PCAReconstruction", "PROTOCOLS", "PUBLISHED", "PyODDetector", "Task",
    "assign_device", "connect", "format_tables", "gpu_turns", "load_rows", "main", "make_detector",
    "make_tasks", "plot_results", "run_all", "run_one", "write_results",
]  # fmt: skip
