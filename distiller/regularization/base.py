"""The contract between regularizers and :class:`~distiller.policy.RegularizationPolicy`."""
import abc


class Regularizer(abc.ABC):
    """Base class of all regularizers.

    Args:
        name: the instance name (the YAML key under ``regularizers:``).
        model: the model being regularized.
        reg_regims: parameter name / regex -> strength, or -> ``[strength, group_type]``.
        threshold_criteria: None, ``'Max'`` or ``'Mean_Abs'``: after each mini-batch, zero the groups
            whose norm falls below the regularization strength (turning the regularizer into a pruner).
    """

    def __init__(self, name, model, reg_regims, threshold_criteria=None):
        self.name = name
        self.model = model
        self.reg_regims = dict(reg_regims)
        self.threshold_criteria = threshold_criteria

    def targets(self):
        """The parameter names / regular expressions this regularizer acts on."""
        return list(self.reg_regims)

    @abc.abstractmethod
    def loss(self, param, param_name, regularizer_loss, zeros_mask_dict):
        """Returns ``regularizer_loss`` plus this regularizer's term for ``param``."""

    def on_minibatch_begin(self, model, zeros_mask_dict):
        """Called before the forward pass of every scheduled mini-batch (default: nothing)."""

    def threshold(self, param, param_name, zeros_mask_dict):
        """Sets ``zeros_mask_dict[param_name].mask`` from ``threshold_criteria`` (default: no-op when None)."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        """Restores what :meth:`state_dict` returned."""
