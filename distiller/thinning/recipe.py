"""``ThinningRecipe``: a plain-data record of a thinning, replayable on a freshly built model.

A recipe maps module names to the indices each thinned dimension keeps::

    {'layer1.0.conv1': {'out_channels': [0, 2, 5, ...]}, 'layer1.0.bn1': {'num_features': [0, 2, 5, ...]}, ...}

It goes into ``CompressionScheduler.model_transforms`` as ``{'kind': 'thinning', 'modules': ...}`` (lists
of ints only, so checkpoints load with ``torch.load(weights_only=True)``); ``load_checkpoint`` replays it
on the original architecture before loading the thinned weights. Unlike Distiller's recipes (pickled
inside the model), nothing is stored on the model.
"""
import torch

from ..registry import register_model_transform
from ..utils import normalize_module_name
from .surgery import apply_edits

__all__ = ["ThinningRecipe", "apply_thinning_recipe"]

RECORD_KIND = "thinning"


class ThinningRecipe:
    """What a thinning removed: module name -> {dimension attribute: kept indices}.

    Args:
        modules: the mapping (indices as lists or 1D tensors); names may carry DataParallel prefixes.
    """

    def __init__(self, modules=None):
        self.modules = {normalize_module_name(name): {attr: torch.as_tensor(keep).reshape(-1).tolist()
                                                      for attr, keep in dims.items()}
                        for name, dims in (modules or {}).items()}

    @classmethod
    def from_plan(cls, plan):
        """Builds a recipe from :func:`~distiller.thinning.plan.make_plan`'s ``{(module, attr): keep}``."""
        modules = {}
        for (name, attr), keep in plan.items():
            modules.setdefault(name, {})[attr] = keep
        return cls(modules)

    def to_record(self):
        """The plain-data model-transform record (``{'kind': 'thinning', 'modules': ...}``)."""
        return {"kind": RECORD_KIND, "modules": {name: dict(dims) for name, dims in self.modules.items()}}

    @classmethod
    def from_record(cls, record):
        """Rebuilds a recipe from :meth:`to_record`'s output.

        Raises:
            ValueError: for a record of another kind.
        """
        if record.get("kind") != RECORD_KIND:
            raise ValueError(f"not a thinning record: kind={record.get('kind')!r}")
        return cls(record["modules"])

    def __len__(self):
        return len(self.modules)

    def __bool__(self):
        return bool(self.modules)

    def __eq__(self, other):
        return isinstance(other, ThinningRecipe) and self.modules == other.modules

    def __repr__(self):
        return f"ThinningRecipe({len(self.modules)} modules)"


def apply_thinning_recipe(model, recipe, optimizer=None, zeros_mask_dict=None):
    """Shrinks ``model`` as ``recipe`` says (in place), slicing the optimizer state and masks too.

    Args:
        model: the model the recipe was made for (or a freshly built one of the same architecture).
        recipe: a :class:`ThinningRecipe` or its :meth:`~ThinningRecipe.to_record` dict.
        optimizer: optional optimizer whose per-parameter state is sliced.
        zeros_mask_dict: optional name -> ParameterMasker dict whose masks are sliced.
    Returns:
        ``model``.
    Raises:
        ThinningError: before any change, when the recipe does not fit the model.
    """
    if isinstance(recipe, dict):
        recipe = ThinningRecipe.from_record(recipe)
    apply_edits(model, recipe.modules, optimizer, [zeros_mask_dict] if zeros_mask_dict is not None else [])
    return model


@register_model_transform(RECORD_KIND)
def _replay(model, record, optimizer=None):
    """Replays a thinning record on a freshly built model (called by ``load_checkpoint``)."""
    apply_thinning_recipe(model, record, optimizer)
