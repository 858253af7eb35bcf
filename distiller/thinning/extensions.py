"""Scheduled thinning: ``StructureRemover`` (and Distiller's ``FilterRemover``/``ChannelRemover``).

At the end of each scheduled epoch the extension calls the chosen thinning function on the scheduler's
model, masks and optimizer, recording the recipe in ``scheduler.model_transforms``. The example input for
graph capture is taken from the training loop itself: the shape of the model's first forward pass in
the epoch (as zeros, batch of one), so the schedule needs no dataset knowledge.

YAML (Distiller's)::

    extensions:
      net_thinner:
        class: FilterRemover
        thinning_func_str: remove_filters
        arch: resnet20_cifar
        dataset: cifar10

    policies:
      - extension:
          instance_name: net_thinner
        epochs: [200]
"""
import logging

from ..errors import ArgumentError, suggest
from ..graph.capture import zeros_like_inputs
from ..policy import ScheduledTrainingPolicy
from ..registry import register_extension
from .remove import contract_model, remove_channels, remove_filters

msglogger = logging.getLogger(__name__)

__all__ = ["StructureRemover", "FilterRemover", "ChannelRemover", "THINNING_FUNCTIONS"]

#: ``thinning_func_str`` values.
THINNING_FUNCTIONS = {"remove_filters": remove_filters, "remove_channels": remove_channels,
                      "contract_model": contract_model}


@register_extension
class StructureRemover(ScheduledTrainingPolicy):
    """Removes zero structures (filters and/or channels) at the end of its scheduled epochs.

    Args:
        thinning_func_str: ``'remove_filters'``, ``'remove_channels'`` or ``'contract_model'``.
        arch: accepted for Distiller compatibility (unused: the graph comes from the training input).
        dataset: a dataset name whose image shape is the fallback example input when no forward pass ran
            in the epoch (e.g. when thinning right after resuming).
        round_to: keep output channel counts multiples of this.

    YAML::

        thinner:
          class: StructureRemover
          thinning_func_str: remove_filters

    Raises:
        ValueError: for an unknown ``thinning_func_str``.
    """

    #: Thinning traces the model's channel dependency graph (see :mod:`distiller.schedule_conflicts`).
    uses_channel_graph = True

    def __init__(self, thinning_func_str="contract_model", arch=None, dataset=None, round_to=1):
        super().__init__()
        if thinning_func_str not in THINNING_FUNCTIONS:
            hint = suggest(thinning_func_str, THINNING_FUNCTIONS)
            raise ArgumentError(f"unknown thinning_func_str {thinning_func_str!r}; expected one of "
                                f"{sorted(THINNING_FUNCTIONS)}" + (f" (did you mean {hint}?)" if hint else ""))
        self.thinning_func_str = thinning_func_str
        self.thinning_func = THINNING_FUNCTIONS[thinning_func_str]
        self.arch, self.dataset, self.round_to = arch, dataset, round_to
        self.example_input = None
        self._hook = None

    def _record_input(self, module, args):
        self.example_input = zeros_like_inputs(args)
        self._remove_hook()

    def _remove_hook(self):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_epoch_begin(self, model, zeros_mask_dict, meta, **kwargs):
        if self.example_input is None and self._hook is None:
            self._hook = meta["model"].register_forward_pre_hook(self._record_input)

    def on_epoch_end(self, model, zeros_mask_dict, meta, **kwargs):
        self._remove_hook()
        optimizer = kwargs.get("optimizer") or meta.get("optimizer")
        recipe = self.thinning_func(model, zeros_mask_dict, self.arch, self.dataset, optimizer=optimizer,
                                    dummy_input=self.example_input, scheduler=meta.get("scheduler"),
                                    round_to=self.round_to)
        msglogger.info("%s (%s) at epoch %s: %d modules thinned", type(self).__name__, self.thinning_func_str,
                       meta.get("current_epoch"), len(recipe))


@register_extension
class FilterRemover(StructureRemover):
    """Distiller's name for a :class:`StructureRemover` that removes zero filters by default.

    YAML::

        filter_thinner:
          class: FilterRemover
          thinning_func_str: remove_filters
    """

    def __init__(self, thinning_func_str="remove_filters", arch=None, dataset=None, round_to=1):
        super().__init__(thinning_func_str, arch, dataset, round_to)


@register_extension
class ChannelRemover(StructureRemover):
    """Distiller's name for a :class:`StructureRemover` that removes unused channels by default.

    YAML::

        channel_thinner:
          class: ChannelRemover
          thinning_func_str: remove_channels
    """

    def __init__(self, thinning_func_str="remove_channels", arch=None, dataset=None, round_to=1):
        super().__init__(thinning_func_str, arch, dataset, round_to)
