"""Settings of individual layer inputs (Distiller's ``input_overrides``): their check and their meaning.

By default a range-linear wrapper quantizes each input as it quantizes its output (or, in
:class:`~distiller.quantization.PostTrainLinearQuantizer`, with the parameters of the quantized layer that
produced it). ``input_overrides`` maps an input index to ``{from_output: true}`` (the output's settings,
without half-range clipping) or to any of ``bits_activations``, ``mode``, ``clip_acts``, ``clip_n_stds``,
each replacing the output's setting for that input. YAML::

    overrides:
      conv1:
        input_overrides:
          0: {bits_activations: 8, clip_acts: NONE}
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Optional

from ...errors import ArgumentError, suggest
from ...spec import Range, check_value
from ..q_utils import (ClipMode, ClipModeArg, LinearQuantMode, PositiveReal, QuantModeArg, parse_clip_mode,
                       quantized_range_for_mode, verify_quant_mode)

__all__ = ["InputOverrides", "InputQuantSettings", "INPUT_SETTING_TYPES", "check_input_overrides",
           "input_quant_settings"]

#: Per-input settings: ``{index: {'from_output': True}}`` or ``{index: {'bits_activations': b, 'mode': m,
#: 'clip_acts': c, 'clip_n_stds': n}}`` (any subset); indices may be given as digit strings (checkpoints).
#: Indices and settings are checked by :func:`check_input_overrides` (which names the input and setting).
InputOverrides = Mapping[Any, Any]
#: The type of each input setting. Two bits at least: a one-bit symmetric range has no positive level.
INPUT_SETTING_TYPES: dict[str, Any] = {"from_output": bool, "bits_activations": Annotated[int, Range(2, 32)],
                                       "mode": QuantModeArg, "clip_acts": ClipModeArg, "clip_n_stds": PositiveReal}


@dataclasses.dataclass(frozen=True)
class InputQuantSettings:
    """How one input of a wrapper is quantized (by default: as the wrapper's output is)."""
    num_bits: int
    mode: LinearQuantMode
    clip_acts: ClipMode
    clip_n_stds: Optional[float]
    clip_half_range: bool

    @property
    def qrange(self) -> tuple[int, int]:
        return quantized_range_for_mode(self.num_bits, self.mode)


def _index(owner: str, argument: str, key: Any) -> int:
    if isinstance(key, str) and key.isdigit():
        return int(key)
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    raise ArgumentError(f"{owner}: argument '{argument}' has key {key!r}; its keys are input indices (0, 1, ...)",
                        argument="input_overrides", location=(key,))


def check_input_overrides(owner: str, argument: str, value: Any) -> dict[int, dict[str, Any]]:
    """``value`` as ``{input index: settings}``, each setting checked against :data:`INPUT_SETTING_TYPES`.

    Args:
        owner: the class taking the value, for messages.
        argument: how the message names the value (e.g. ``"overrides['conv1']['input_overrides']"``).
    Raises:
        ArgumentError: not a mapping of indices to mappings, an unknown setting (with the closest valid
            ones), a value of the wrong type, or ``from_output`` with other settings; ``.location`` is
            ``(index,)`` or ``(index, setting)``.
    """
    if not isinstance(value, Mapping):
        raise ArgumentError(f"{owner}: argument '{argument}' expects a mapping of input index to settings, got "
                            f"{value!r}", argument="input_overrides")
    result: dict[int, dict[str, Any]] = {}
    for key, settings in value.items():
        index = _index(owner, argument, key)
        where = f"{argument}[{index}]"
        if not isinstance(settings, Mapping):
            raise ArgumentError(f"{owner}: argument '{where}' expects a mapping of settings "
                                f"({', '.join(INPUT_SETTING_TYPES)}), got {settings!r}", argument="input_overrides",
                                location=(key,))
        checked = {}
        for name, setting in settings.items():
            if name not in INPUT_SETTING_TYPES:
                hint = suggest(name, INPUT_SETTING_TYPES)
                raise ArgumentError(f"{owner}: argument '{where}' has unknown setting {name!r}"
                                    + (f" (did you mean {hint}?)" if hint else "")
                                    + f"; valid: {', '.join(INPUT_SETTING_TYPES)}", argument="input_overrides",
                                    location=(key, name))
            try:
                checked[name] = check_value(owner, f"{where}[{name!r}]", INPUT_SETTING_TYPES[name], setting)
            except ArgumentError as err:
                raise ArgumentError(str(err), argument="input_overrides", location=(key, name)) from None
        if checked.get("from_output") and len(checked) > 1:
            raise ArgumentError(f"{owner}: argument '{where}': 'from_output' takes the output's settings and no "
                                f"other setting, got {sorted(set(checked) - {'from_output'})}",
                                argument="input_overrides", location=(key,))
        result[index] = checked
    return result


def input_quant_settings(output: InputQuantSettings, overrides: Mapping[int, Mapping[str, Any]],
                         num_inputs: Optional[int]) -> dict[int, InputQuantSettings]:
    """The settings of each overridden input of a layer, from its checked ``overrides`` and the output's settings.

    Args:
        num_inputs: how many inputs the layer takes, None when not known.
    Raises:
        ArgumentError: an input index the layer does not have, or an input whose clip mode is N_STD without a
            number of standard deviations; ``.location`` is ``(index,)`` or ``(index, setting)``.
    """
    result = {}
    for index, override in overrides.items():
        if num_inputs is not None and index >= num_inputs:
            raise ArgumentError(f"input_overrides[{index}]: the layer takes {num_inputs} input(s)"
                                + (f" (indices 0..{num_inputs - 1})" if num_inputs else ""),
                                argument="input_overrides", location=(index,))
        if override.get("from_output"):
            result[index] = dataclasses.replace(output, clip_half_range=False)
            continue
        settings = InputQuantSettings(override.get("bits_activations", output.num_bits),
                                      verify_quant_mode(override.get("mode", output.mode)).activations,
                                      parse_clip_mode(override.get("clip_acts", output.clip_acts)),
                                      override.get("clip_n_stds", output.clip_n_stds), False)
        if settings.clip_acts == ClipMode.N_STD and settings.clip_n_stds is None:
            raise ArgumentError(f"input_overrides[{index}]: clip_acts N_STD needs clip_n_stds (the number of "
                                f"standard deviations)", argument="input_overrides", location=(index, "clip_acts"))
        result[index] = settings
    return result
