"""The model registry: which architectures exist and which datasets each one is built for.

Each architecture belongs to a *family* of datasets that share an input format:

==========  ========================  =================  =======
family      datasets                  input shape        classes
==========  ========================  =================  =======
cifar10     ``cifar10``, ``digits``   (1, 3, 32, 32)     10
mnist       ``mnist``                 (1, 1, 28, 28)     10
imagenet    ``imagenet``              (1, 3, 224, 224)   1000
==========  ========================  =================  =======

``digits`` (scikit-learn's handwritten digits resized to 32x32 RGB) has CIFAR-10's format, so every
CIFAR-10 architecture runs on it unchanged.

Example:
    Register your own architecture so that ``create_model`` and the sample application find it::

        from distiller.models import register_model

        @register_model("cifar10")
        def tiny_cifar(num_classes=10):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, num_classes))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from ..errors import ArgumentError, suggest
from ..registry import Registry

_FAMILY_OF_DATASET = {"cifar10": "cifar10", "digits": "cifar10", "mnist": "mnist", "imagenet": "imagenet"}
_INPUT_SHAPE = {"cifar10": (1, 3, 32, 32), "mnist": (1, 1, 28, 28), "imagenet": (1, 3, 224, 224)}
_NUM_CLASSES = {"cifar10": 10, "mnist": 10, "imagenet": 1000}

#: A model builder: called with no arguments (or ``num_classes``), returns the model.
ModelBuilder = Callable[..., nn.Module]

DATASETS = tuple(sorted(_FAMILY_OF_DATASET))
"""The dataset names known to the model zoo and to ``distiller.apputils.load_data``."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: ``build()`` returns a randomly initialised model, ``build_pretrained()``
    (None when no weights are published) one with pretrained weights."""
    name: str
    family: str
    build: ModelBuilder
    build_pretrained: Optional[ModelBuilder] = None

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(d for d in DATASETS if _FAMILY_OF_DATASET[d] == self.family)


#: architecture name -> :class:`ModelEntry` (the same registry class as the schedule sections').
MODELS: Registry[ModelEntry] = Registry("models")
_PREFIXES: dict[str, Callable[[str], ModelEntry]] = {}


def register_model(family: str, name: Optional[str] = None, build_pretrained: Optional[ModelBuilder] = None
                   ) -> Callable[[ModelBuilder], ModelBuilder]:
    """Returns a decorator that registers a model builder under ``name`` (default: the function's name).

    Args:
        family: ``'cifar10'``, ``'mnist'`` or ``'imagenet'``: the input format the model expects.
        name: the architecture name (``--arch``); defaults to the builder's ``__name__``.
        build_pretrained: optional callable returning the model with pretrained weights.
    Raises:
        ArgumentError: unknown family, or a name that is already registered by another builder.
    """
    if family not in _INPUT_SHAPE:
        raise ArgumentError(f"unknown model family '{family}'; use one of {sorted(_INPUT_SHAPE)}")

    def add(builder: ModelBuilder) -> ModelBuilder:
        key = name or builder.__name__
        existing = MODELS.get(key) if key in MODELS else None
        if existing is not None and existing.build is not builder:
            raise ArgumentError(f"architecture name '{key}' is already registered (family '{existing.family}')")
        if existing is None:
            MODELS.register(ModelEntry(key, family, builder, build_pretrained), name=key)
        return builder
    return add


def register_model_prefix(prefix: str, resolve: Callable[[str], ModelEntry]) -> None:
    """Resolves every architecture name that starts with ``prefix`` (e.g. ``'timm:'``) with
    ``resolve(rest_of_the_name)``, which returns a ``ModelEntry``: for collections of models too large to
    list one by one. Such names are not in ``list_models()``."""
    _PREFIXES[prefix] = resolve


def register_user_model(arch: str, dataset: str, model: ModelBuilder) -> None:
    """Distiller's way to add a model: ``create_model(pretrained=False, dataset, arch)`` then returns
    ``model()``. Same as ``register_model(family of dataset, name=arch)(model)``.

    Raises:
        ArgumentError: unknown dataset, or ``arch`` is already registered.
    """
    register_model(_FAMILY_OF_DATASET[check_dataset(dataset)], name=arch)(model)


def list_models(dataset: Optional[str] = None) -> list[str]:
    """The sorted names of all registered architectures, or of those built for ``dataset``."""
    if dataset is None:
        return MODELS.names()
    family = _FAMILY_OF_DATASET[check_dataset(dataset)]
    return [name for name, entry in MODELS.items() if entry.family == family]


def check_dataset(dataset: str) -> str:
    """Returns the canonical (lower-case) dataset name; raises ArgumentError naming close matches."""
    name = str(dataset).lower()
    if name not in _FAMILY_OF_DATASET:
        hint = suggest(name, DATASETS)
        raise ArgumentError(f"unknown dataset '{dataset}'" + (f"; did you mean {hint}?" if hint else "")
                            + f" (supported datasets: {', '.join(DATASETS)})")
    return name


def model_entry(arch: str) -> ModelEntry:
    """Returns the ``ModelEntry`` of ``arch``; raises ArgumentError naming close matches for unknown names."""
    for prefix, resolve in _PREFIXES.items():
        if str(arch).startswith(prefix):
            return resolve(str(arch)[len(prefix):])
    try:
        return MODELS.get(arch)
    except KeyError:
        hint = suggest(arch, MODELS.names())
        raise ArgumentError(f"unknown architecture '{arch}'" + (f"; did you mean {hint}?" if hint else "")
                            + " (see distiller.models.ALL_MODEL_NAMES for all names)") from None


def datasets_of_arch(arch: str) -> tuple[str, ...]:
    """The datasets that architecture ``arch`` is built for, e.g. ``('cifar10', 'digits')``."""
    return model_entry(arch).datasets


def is_model_for_dataset(arch: str, dataset: str) -> bool:
    """True when architecture ``arch`` accepts the input format of ``dataset``."""
    return check_dataset(dataset) in datasets_of_arch(arch)


def dataset_input_shape(dataset: str) -> tuple[int, int, int, int]:
    """The input shape (batch of one) of ``dataset``'s images, e.g. ``(1, 3, 32, 32)`` for ``'digits'``."""
    return _INPUT_SHAPE[_FAMILY_OF_DATASET[check_dataset(dataset)]]


def dataset_num_classes(dataset: str) -> int:
    """The number of classes of ``dataset`` (10 for cifar10, digits and mnist; 1000 for imagenet)."""
    return _NUM_CLASSES[_FAMILY_OF_DATASET[check_dataset(dataset)]]
