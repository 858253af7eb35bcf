"""Magnitude-threshold pruning, and the argument checks shared by the element-wise pruners.

Element-wise pruners take their per-parameter settings as a mapping from parameter names / regular
expressions (``'*'``: every targeted parameter) to a number; :class:`PerParameterValuePruner` validates
such a mapping once, in the constructor, and looks the value of a parameter up at pruning time.
"""
import numbers

from ..errors import ArgumentError
from ..registry import register_pruner
from ..utils import pattern_lookup
from .base import ParameterPruner
from .masks import create_mask_threshold_criterion


def as_number(owner, label, value, minimum=None, below=None):
    """Returns ``value`` as a float after checking its type and range.

    Numeric strings are accepted because PyYAML reads exponent literals without a dot (``1e-3``) as
    strings.

    Args:
        owner: the pruner instance name, for the message.
        label: the argument (path) being checked, e.g. ``thresholds['conv1.weight']``.
        value: the value to check.
        minimum: smallest allowed value (inclusive), or None.
        below: exclusive upper bound, or None.
    Raises:
        ValueError: naming ``owner`` and ``label`` when the value is not a number or out of range.
    """
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or number != number:
        raise ArgumentError(f"{owner}: {label}={value!r} is not a number")
    if minimum is not None and number < minimum:
        raise ArgumentError(f"{owner}: {label}={value!r} must be at least {minimum}")
    if below is not None and number >= below:
        range_text = f"[{minimum}, {below})" if minimum is not None else f"below {below}"
        raise ArgumentError(f"{owner}: {label}={value!r} is outside {range_text}")
    return number


def as_weights_list(owner, weights):
    """Returns ``weights`` (one name/regex or a list of them) as a non-empty list of strings.

    Raises:
        ValueError: naming ``owner`` when ``weights`` is missing, empty or holds non-strings.
    """
    names = [weights] if isinstance(weights, str) else weights
    if not isinstance(names, (list, tuple)) or not names:
        raise ArgumentError(f"{owner}: 'weights' must be a non-empty list of parameter names or regular "
                            f"expressions, got {weights!r}")
    for index, entry in enumerate(names):
        if not isinstance(entry, str) or not entry:
            raise ArgumentError(f"{owner}: weights[{index}]={entry!r} is not a parameter name or regex")
    return list(names)


class PerParameterValuePruner(ParameterPruner):
    """Base of the pruners configured by a ``{name or regex or '*': number}`` mapping.

    Args:
        name: instance name.
        arg_name: the constructor argument holding the mapping (for messages).
        values: the mapping; each value is checked with :func:`as_number` and ``minimum``/``below``.
        minimum, below: the allowed range of the values.
    Raises:
        ValueError: for a missing/empty mapping, a non-string key or a bad value.
    """

    def __init__(self, name, arg_name, values, minimum=None, below=None):
        super().__init__(name)
        self.arg_name = arg_name
        self.value_range = (minimum, below)
        self.values = self.checked_values(values)

    def checked_values(self, values):
        """Returns ``values`` validated, with numbers as floats (see the class docstring)."""
        if not isinstance(values, dict) or not values:
            raise ArgumentError(f"{self.name}: '{self.arg_name}' must be a non-empty mapping from parameter "
                                f"names (or regexes, or '*') to numbers, got {values!r}")
        checked = {}
        for key, value in values.items():
            if not isinstance(key, str) or not key:
                raise ArgumentError(f"{self.name}: {self.arg_name} key {key!r} is not a parameter name or regex")
            checked[key] = as_number(self.name, f"{self.arg_name}[{key!r}]", value, *self.value_range)
        return checked

    def targets(self):
        return list(self.values)

    def value_for(self, param_name):
        """The configured value of ``param_name``: exact name, else first matching regex, else ``'*'``.

        Raises:
            KeyError: when nothing in the mapping matches ``param_name``.
        """
        value = pattern_lookup(self.values, param_name)
        if value is None:
            raise KeyError(f"{self.name}: no entry of '{self.arg_name}' matches parameter "
                           f"'{param_name}' (keys: {list(self.values)})")
        return value


@register_pruner
class MagnitudeParameterPruner(PerParameterValuePruner):
    """Prunes the elements whose magnitude is at most a fixed threshold (mask = ``|w| > threshold``).

    The simplest element-wise pruner (Han et al. 2015 prune by magnitude; here the threshold is given
    directly instead of derived from the weights' spread, see :class:`SensitivityPruner`).

    Args:
        name: instance name.
        thresholds: ``{parameter name or regex or '*': threshold >= 0}``.

    YAML::

        my_pruner:
          class: MagnitudeParameterPruner
          thresholds:
            'conv1.weight': 0.02
            '*': 0.01
    """

    def __init__(self, name, thresholds):
        super().__init__(name, "thresholds", thresholds, minimum=0.0)

    @property
    def thresholds(self):
        return self.values

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        zeros_mask_dict[param_name].mask = create_mask_threshold_criterion(param, self.value_for(param_name))
