"""The model zoo: ``create_model(pretrained, dataset, arch)`` builds any registered architecture.

``ALL_MODEL_NAMES`` lists the architectures shipped with distiller (CIFAR-10/digits, MNIST and ImageNet
families, see ``distiller.models.registry``): Distiller's own models under Distiller's names and layouts,
torchvision's (plain ones as ``torchvision.<name>``) and, when installed, Cadene's ``pretrainedmodels``;
timm's models are built as ``'timm:<name>'`` when timm is installed (see ``distiller.models.external``).
``register_model`` (or Distiller's ``register_user_model``) adds your own.
"""
from . import cifar10, imagenet, mnist
from .create import create_model
from .external import register_installed
from .registry import (DATASETS, ModelEntry, check_dataset, dataset_input_shape, dataset_num_classes,
                       datasets_of_arch, is_model_for_dataset, list_models, model_entry, register_model,
                       register_user_model)

register_installed()

ALL_MODEL_NAMES = list_models()
"""Sorted names of the architectures shipped with distiller (and of installed ``pretrainedmodels``)."""

__all__ = ["ALL_MODEL_NAMES", "DATASETS", "ModelEntry", "check_dataset", "cifar10", "create_model",
           "dataset_input_shape", "dataset_num_classes", "datasets_of_arch", "imagenet",
           "is_model_for_dataset", "list_models", "mnist", "model_entry", "register_model",
           "register_user_model"]
