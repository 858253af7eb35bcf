"""Distiller's thinning helpers over :class:`~distiller.thinning.ThinningRecipe`."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

from torch import nn

from ..errors import UserError
from .recipe import ThinningRecipe, apply_thinning_recipe

__all__ = ["execute_thinning_recipes_list", "get_normalized_recipe", "resnet_cifar_remove_layers"]

RecipeLike = Union[ThinningRecipe, Mapping[str, Any]]


def get_normalized_recipe(recipe: RecipeLike) -> ThinningRecipe:
    """A copy of ``recipe`` whose module names have no DataParallel ``module.`` components.

    Args:
        recipe: a :class:`ThinningRecipe`, its record (``{'kind': 'thinning', 'modules': ...}``) or the
            ``{module name: {dimension: kept indices}}`` mapping itself.
    """
    if isinstance(recipe, ThinningRecipe):
        return ThinningRecipe(recipe.modules)
    if "kind" in recipe:
        return ThinningRecipe.from_record(recipe)
    return ThinningRecipe(recipe)


def execute_thinning_recipes_list(model: nn.Module, zeros_mask_dict: Optional[Mapping[str, Any]],
                                  recipe_list: Iterable[RecipeLike]) -> nn.Module:
    """Replays the recipes of ``recipe_list`` on ``model``, in order, slicing the masks of ``zeros_mask_dict``
    (may be None) with the weights (see :func:`~distiller.thinning.apply_thinning_recipe`); returns ``model``.

    Raises:
        ThinningError: a recipe does not fit the model (checked before it changes anything).
    """
    for recipe in recipe_list:
        apply_thinning_recipe(model, get_normalized_recipe(recipe), zeros_mask_dict=zeros_mask_dict)
    return model


def resnet_cifar_remove_layers(model: nn.Module) -> None:
    """Not available: Distiller switched off the residual-block convolutions whose weights were all zero through
    "layer gates" built into its CIFAR ResNets, which these models do not have (their layouts match
    Distiller's parameters without the gates).

    Raises:
        UserError: always, naming the replacement: remove the zero filters and channels with
            :func:`distiller.thinning.remove_filters` / :func:`~distiller.thinning.contract_model` (or the
            ``FilterRemover`` extension), which also records the change for ``load_checkpoint``.
    """
    raise UserError("resnet_cifar_remove_layers relied on Distiller's layer gates inside ResNetCifar, which these "
                    "models do not have; remove zero structures with distiller.thinning.remove_filters or "
                    "contract_model (or the FilterRemover extension) instead: see the Distiller migration table "
                    "in the README")
