"""The contract between pruners and the scheduler.

A pruner decides masks; it never touches weights. The :class:`~distiller.policy.PruningPolicy` that
schedules it resolves :meth:`ParameterPruner.targets` against the model once (an unmatched name is an
error, not "0% sparsity"), then calls :meth:`ParameterPruner.set_param_mask` for each targeted
parameter at the scheduled epochs / mini-batches. The mask is stored in ``zeros_mask_dict[name].mask``
(a tensor of 0/1 with the parameter's shape, dtype and device); the scheduler applies it.
"""
import abc


class ParameterPruner(abc.ABC):
    """Base class of all pruners.

    Args:
        name: the instance name (the YAML key under ``pruners:``).
    """

    def __init__(self, name):
        self.name = name

    @abc.abstractmethod
    def targets(self):
        """Returns the parameter names / regular expressions this pruner acts on (``'*'``: all)."""

    @abc.abstractmethod
    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        """Computes the mask of ``param`` and stores it in ``zeros_mask_dict[param_name].mask``.

        Args:
            param: the parameter tensor.
            param_name: its fully-qualified name in the model.
            zeros_mask_dict: name -> :class:`~distiller.ParameterMasker`.
            meta: schedule facts: ``starting_epoch``, ``ending_epoch``, ``frequency``,
                ``current_epoch`` (fractional when pruning inside an epoch), ``model``, ``optimizer``.
        """

    def state_dict(self):
        """Plain-data state that a resumed run needs (default: none)."""
        return {}

    def load_state_dict(self, state):
        """Restores what :meth:`state_dict` returned."""

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"
