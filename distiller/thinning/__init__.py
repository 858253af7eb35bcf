"""Thinning: physically remove pruned channels, following the channel dependencies of the real data flow.

* :func:`remove_filters`, :func:`remove_channels`, :func:`contract_model`: remove zero filters / unused
  channels (Distiller's API, plus ``dummy_input``, ``scheduler``, ``round_to``, ``strict``).
* :func:`prune_and_thin`: rank channels per dependency group and remove the weakest in one call.
* :class:`ThinningRecipe`, :func:`apply_thinning_recipe`: the plain-data record of a thinning and its
  replay on a freshly built model (registered as the ``'thinning'`` model transform for ``load_checkpoint``).
* :class:`StructureRemover`, :class:`FilterRemover`, :class:`ChannelRemover`: YAML extensions.
* :func:`execute_thinning_recipes_list`, :func:`get_normalized_recipe`: Distiller's recipe helpers.
"""
from .compat import execute_thinning_recipes_list, get_normalized_recipe, resnet_cifar_remove_layers
from .extensions import THINNING_FUNCTIONS, ChannelRemover, FilterRemover, StructureRemover
from .plan import ThinningError
from .prune_and_thin import ThinningReport, prune_and_thin
from .recipe import ThinningRecipe, apply_thinning_recipe
from .remove import contract_model, remove_channels, remove_filters, speedup

__all__ = ["remove_filters", "remove_channels", "contract_model", "speedup", "prune_and_thin", "ThinningReport",
           "ThinningRecipe", "apply_thinning_recipe", "ThinningError", "StructureRemover", "FilterRemover",
           "ChannelRemover", "THINNING_FUNCTIONS", "execute_thinning_recipes_list", "get_normalized_recipe",
           "resnet_cifar_remove_layers"]
