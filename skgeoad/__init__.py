"""skgeoad: deep anomaly detectors for images, as scikit-learn estimators."""

from .geometric import GeometricTransformDetector

__version__ = "0.1.0"

__all__ = ["GeometricTransformDetector", "__version__"]
