"""Models: architectures shaped from the data, all taking pixel-space inputs in [0, 1].

Architectures are a registry (:data:`MODELS`): one file per architecture in
``advcli/models/architectures/``, each registering a factory ``(input_shape, num_classes) -> nn.Module``.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "MODELS": ".architectures",
    "DEFAULT_MODEL": ".architectures",
    "build_model": ".build",
    "FewChannelConv2d": ".layers",
    "Normalize": ".layers",
    "SeedCNN": ".architectures.seed_cnn",
    "SmallMNISTCNN": ".architectures.mnist_small",
    "PreActResNet18": ".architectures.preact_resnet18",
})

__all__ = ["MODELS", "DEFAULT_MODEL", "build_model", "FewChannelConv2d", "Normalize", "SeedCNN", "SmallMNISTCNN",
           "PreActResNet18"]
