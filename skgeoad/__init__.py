"""skgeoad: deep anomaly detectors for images, as scikit-learn estimators."""

from .geometric import GeometricTransformDetector
from .subcluster import SubClusterDetector

__version__ = "0.1.0"

__all__ = ["GeometricTransformDetector", "SubClusterDetector", "__version__"]
