"""skgeoad: deep anomaly detectors for images, as scikit-learn estimators."""

from ._config import config_context, get_config, set_config
from .adgan import ADGANDetector
from .export import export_onnx
from .geometric import GeometricTransformDetector
from .iterative_ae import IterativeClusterAEDetector
from .persistence import load, save
from .subcluster import SubClusterDetector

__version__ = "0.1.0"

__all__ = [
    "ADGANDetector",
    "GeometricTransformDetector",
    "IterativeClusterAEDetector",
    "SubClusterDetector",
    "__version__",
    "config_context",
    "export_onnx",
    "get_config",
    "load",
    "save",
    "set_config",
]
