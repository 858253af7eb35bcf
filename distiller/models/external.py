"""Models from optional third-party packages, as in Distiller: all ImageNet classifiers (224x224 RGB inputs,
1000 classes).

* ``timm`` (Wightman, "PyTorch Image Models"): any timm architecture as ``'timm:<name>'``, e.g.
  ``create_model(False, 'imagenet', 'timm:resnet50')``; pretrained weights come from timm's hub. Without
  timm installed, such a name raises ``MissingDependencyError`` saying ``pip install timm``.
* ``pretrainedmodels`` (Cadene's "Pretrained models for PyTorch"): when installed, its models are registered
  under their own names (``fbresnet152``, ``nasnetalarge``, ...) unless the name is taken by a model of this
  zoo or torchvision, which win, as in Distiller.
"""
import functools
import importlib
import importlib.util
import logging
from types import ModuleType

from ..errors import ArgumentError, MissingDependencyError, suggest
from .registry import ModelEntry, list_models, register_model, register_model_prefix

msglogger = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"


def import_timm() -> ModuleType:
    """The ``timm`` package; ``MissingDependencyError`` naming ``pip install timm`` when it is not installed."""
    try:
        return importlib.import_module("timm")
    except ModuleNotFoundError as err:
        if err.name != "timm":
            raise
        raise MissingDependencyError("architectures named 'timm:<name>' need the optional timm package: "
                                     "pip install timm") from err


def timm_entry(name: str) -> ModelEntry:
    """The registry entry of timm's architecture ``name`` (with or without a pretrained tag, e.g.
    ``resnet50.a1_in1k``).

    Raises:
        MissingDependencyError: timm is not installed.
        ArgumentError: timm has no such architecture (close matches are named).
    """
    timm = import_timm()
    if not timm.is_model(name):
        hint = suggest(name, timm.list_models())
        raise ArgumentError(f"timm has no architecture '{name}'" + (f"; did you mean {hint}?" if hint else "")
                            + " (see timm.list_models())")
    return ModelEntry(TIMM_PREFIX + name, "imagenet", functools.partial(timm.create_model, name, pretrained=False),
                      functools.partial(timm.create_model, name, pretrained=True))


def register_pretrainedmodels(package: ModuleType) -> list:
    """Registers the models of Cadene's ``pretrainedmodels`` ``package`` whose names are free; returns
    their names."""
    taken = set(list_models())
    added = [name for name in package.model_names if name not in taken]
    for name in added:
        builder = getattr(package, name)
        register_model("imagenet", name=name,
                       build_pretrained=functools.partial(builder, num_classes=1000, pretrained="imagenet"))(
            functools.partial(builder, num_classes=1000, pretrained=None))
    return added


def register_installed() -> None:
    """Registers the ``timm:`` prefix and, when ``pretrainedmodels`` is installed, its models."""
    register_model_prefix(TIMM_PREFIX, timm_entry)
    if importlib.util.find_spec("pretrainedmodels") is None:
        return
    try:
        package = importlib.import_module("pretrainedmodels")
    except Exception as err:  # noqa: BLE001 - a broken optional package must not break the library's import
        msglogger.warning("pretrainedmodels is installed but cannot be imported (%s: %s); its models are not "
                          "available", type(err).__name__, err)
        return
    register_pretrainedmodels(package)
