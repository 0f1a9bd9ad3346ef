"""Plain ``torch.nn.Module`` networks used by the detectors.

Nothing in this sub-package knows about scikit-learn: each network takes its
sizes in a typed constructor, initialises its weights from an explicit
``torch.Generator`` in :meth:`reset_parameters`. Classifiers expose
``forward_features`` (the penultimate representation) and ``forward_head``;
autoencoders ``encode`` (the bottleneck code) and ``decode``.
"""

from .autoencoder import ConvAutoencoder, MLPAutoencoder
from .cnn import SmallCNN
from .dcgan import DCGANCritic, DCGANGenerator
from .mlp import MLP
from .wrn import WideResNet

__all__ = ["ConvAutoencoder", "DCGANCritic", "DCGANGenerator", "MLP", "MLPAutoencoder", "SmallCNN", "WideResNet"]
