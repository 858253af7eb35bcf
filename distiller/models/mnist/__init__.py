"""Architectures for 28x28 grey-scale images with 10 classes (the ``mnist`` dataset).

Importing this package registers every builder in ``distiller.models.registry``.
"""
from .simplenet_mnist import SimpleNet, SimpleNetMnist, SimpleNetV2, simplenet_mnist, simplenet_v2_mnist

__all__ = ["SimpleNet", "SimpleNetMnist", "SimpleNetV2", "simplenet_mnist", "simplenet_v2_mnist"]
