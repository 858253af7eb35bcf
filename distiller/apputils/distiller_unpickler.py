"""Reads checkpoints written by IntelLabs Distiller without importing or running the classes they name.

Distiller pickled Python classes into its checkpoints: the optimizer's class (``optimizer_type``), the
quantizer's class (``quantizer_metadata['type']``) and its thinning recipes (``ThinningRecipe``
namedtuples), so they do not load with ``torch.load(weights_only=True)``. :func:`read_distiller_checkpoint`
loads them with a restricted unpickler instead: only plain containers, torch's tensor rebuilding functions
and NumPy scalars and arrays resolve to real objects; Distiller's ``ThinningRecipe`` becomes a
:class:`DistillerRecipe`, its quantization enums become ours, and every other class or function the file
names becomes an inert :class:`PickledReference` subclass that only records its dotted path. Both the new
(zip) and the legacy (torch < 1.6) file formats are read.
"""
from __future__ import annotations

import logging
import os
import pickle
import types
from typing import IO, Any, ClassVar, NamedTuple, Union

import torch

from ..errors import CheckpointError, InputFileError
from ..quantization.q_utils import ClipMode, LinearQuantMode

__all__ = ["read_distiller_checkpoint", "DistillerRecipe", "PickledReference", "reference_path"]

msglogger = logging.getLogger(__name__)


class DistillerRecipe(NamedTuple):
    """Distiller's ``ThinningRecipe``: ``modules`` maps module names to ``{attribute: new value}``,
    ``parameters`` maps parameter names to lists of ``(dim, kept indices[, view before, view after])``."""
    modules: dict[str, dict[str, Any]]
    parameters: dict[str, Any]


class PickledReference:
    """Stands in for a class or function a Distiller checkpoint names: a subclass per name, whose ``path``
    is the dotted name; instances keep the arguments and state they were unpickled with, unused."""

    path: ClassVar[str] = ""
    args: tuple[Any, ...] = ()
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args + tuple(kwargs.items())

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.path} from a Distiller checkpoint>"


def reference_path(value: Any) -> str:
    """The dotted name a :class:`PickledReference` (class or instance) stands for, else ``''``."""
    if (isinstance(value, type) and issubclass(value, PickledReference)) or isinstance(value, PickledReference):
        return value.path
    return ""


#: Globals resolved to the real object: plain containers, bytes (pickle protocol 2 encodes them with
#: ``_codecs.encode``), torch's tensor rebuilding, NumPy scalars and arrays.
_REAL_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("_codecs", "encode"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("torch", "Size"), ("torch", "device"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
    ("numpy._core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "dtype"),
    ("numpy", "ndarray"),
})
#: Distiller's quantization enums (in ``range_linear`` or ``q_utils``, by version): same names and values.
_ENUMS = {"LinearQuantMode": LinearQuantMode, "ClipMode": ClipMode}
_RECIPE = ("distiller.thinning", "ThinningRecipe")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves the globals listed above; every other one becomes a :class:`PickledReference` subclass."""

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._references: dict[str, type[PickledReference]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # NumPy 2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) in _REAL_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                  torch.dtype)):
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        if (module, name) == _RECIPE:
            return DistillerRecipe
        if module.startswith("distiller.quantization") and name in _ENUMS:
            return _ENUMS[name]
        path = f"{module}.{name}"
        if path not in self._references:
            self._references[path] = type(name, (PickledReference,), {"path": path, "__module__": __name__})
        return self._references[path]


def _load(file: IO[bytes], **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


#: The ``pickle_module`` handed to ``torch.load``: it uses :class:`_RestrictedUnpickler` throughout.
_PICKLE_MODULE = types.ModuleType("distiller_checkpoint_unpickler")
_PICKLE_MODULE.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_PICKLE_MODULE.load = _load  # type: ignore[attr-defined]


def read_distiller_checkpoint(path: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """Loads a checkpoint saved by Distiller (tensors on the CPU) with the restricted unpickler.

    Pickle data can still attack the unpickler itself, so a warning asks to convert trusted files only.

    Raises:
        InputFileError: the file does not exist.
        CheckpointError: the file is not a readable torch checkpoint, or it has no ``state_dict`` entry.
    """
    if not os.path.isfile(path):
        raise InputFileError(f"checkpoint file not found: '{path}'")
    msglogger.warning("Reading '%s' as a pickled Distiller checkpoint: its classes are not imported or run, but "
                      "convert only files from a source you trust", path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE)
    except Exception as err:  # torch and pickle raise many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise CheckpointError(f"'{path}' is not a readable Distiller checkpoint (corrupt, truncated or not "
                              f"written by torch.save): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                              ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"'{path}' is not a Distiller checkpoint: it has no 'state_dict' entry (a file "
                              f"written by distiller.apputils.save_checkpoint, or a model's bare state dict?)")
    return checkpoint
