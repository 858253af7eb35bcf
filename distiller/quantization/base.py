"""The :class:`Quantizer`: turns a float model into a quantized one by replacing modules in place.

A quantization method subclasses :class:`Quantizer` and fills in

* ``replacement_factory``: module type -> ``fn(module, name, qbits_map, **layer_overrides)`` returning the
  replacement module, or None / the module itself to keep it (``default_replacement_fn`` applies to leaf
  modules of other types);
* ``param_quantization_fn``: ``fn(float_tensor, param_meta) -> quantized tensor`` for the weights and
  biases of the layer types in ``quantizable_weight_types``; ``param_meta`` is a :class:`ParamToQuant`.

:meth:`Quantizer.prepare_model` validates everything first (bit widths, override patterns and keys),
then replaces modules (names never change) and, with ``train_with_fp_copy``, moves each quantized
``weight`` to a ``float_weight`` Parameter and keeps the quantized value in a ``weight`` buffer, refreshed
from ``float_weight`` at every forward so gradients reach the float copy through the quantizer (the
"straight-through" training of Courbariaux et al. 2015 / Hubara et al. 2016). Every tensor the
preparation added ends on the device and dtype of the float module it belongs to
(:mod:`distiller.quantization.placement`), so replacement functions may create tensors with torch's defaults.

Per-layer settings come from ``overrides``: an ordered mapping (YAML mapping, OrderedDict or list of
``[pattern, settings]`` pairs) of module names / full-match regular expressions to dicts with
``bits_activations`` / ``bits_weights`` / ``bits_bias`` and method-specific keys. The first pattern
that matches a module, or one of its ancestors (so ``layer1`` covers ``layer1.0.conv1``), wins.
``module.`` prefixes are ignored; a pattern matching no module is an error.
"""
from __future__ import annotations

import copy
import enum
import inspect
import logging
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Optional, TypeVar, Union

import torch
import torch.nn as nn

from ..errors import ArgumentError
from ..masking import FP_BKP_PREFIX
from ..spec import validated
from ..utils import match_names, model_is_parallel
from .overrides import BITS_KEYS, BITS_TYPES, BitsSetting, OverrideError, Overrides, check_overrides
from .placement import place_added_tensors
from .q_utils import ModuleQuantMode

__all__ = ["Quantizer", "QBits", "ParamToQuant", "FP_BKP_PREFIX", "OverrideError", "preparing_quantizer_class"]

msglogger = logging.getLogger(__name__)

class QBits(NamedTuple):
    """Bit widths of one module's activations, weights and bias (None = not quantized)."""
    acts: Optional[int]
    wts: Optional[int]
    bias: Optional[int]


class ParamToQuant(NamedTuple):
    """A parameter to quantize: the module owning it, its name, the attribute holding the float value, the
    attribute receiving the quantized value (equal without ``train_with_fp_copy``), and the bit width."""
    module: nn.Module
    module_name: str
    fp_attr_name: str
    q_attr_name: str
    num_bits: int


#: ``fn(float_tensor, param_meta) -> quantized tensor``, a quantizer's weight quantization.
ParamQuantizationFn = Callable[[torch.Tensor, ParamToQuant], torch.Tensor]
#: ``fn(module, name, qbits_map, **layer_overrides)`` -> the replacement module, or None to keep it.
ReplacementFn = Callable[..., Optional[nn.Module]]
#: One planned replacement: parent, child attribute, full name, module, replacement function, layer overrides.
_PlannedReplacement = tuple[nn.Module, str, str, nn.Module, ReplacementFn, dict[str, Any]]

_Q = TypeVar("_Q", bound="Quantizer")



class _Preparation:
    """What ``prepare_model`` did to a model: the quantizer's record and the modules it replaced.

    It travels with the model as a no-op forward pre-hook of its root module (so a deep copy of the model
    carries its own), which lets an identically configured quantizer adopt a model that ``load_checkpoint``
    replayed, without any module-level registry.
    """

    def __init__(self, record: dict[str, Any], replaced: set[str], quantizer_class: type[Quantizer]) -> None:
        self.record, self.replaced, self.quantizer_class = record, replaced, quantizer_class

    def __call__(self, module: nn.Module, args: Any) -> None:
        return None

    @staticmethod
    def of(model: nn.Module) -> Optional[_Preparation]:
        return next((hook for hook in model._forward_pre_hooks.values() if isinstance(hook, _Preparation)), None)

    @staticmethod
    def forget(model: nn.Module) -> None:
        """Removes the record and every float-copy refresh hook from ``model`` (a new quantizer takes over)."""
        for module in model.modules():
            for hooks in (module._forward_pre_hooks, module._forward_hooks):
                for key in [k for k, hook in hooks.items()
                            if isinstance(hook, _Preparation) or getattr(hook, "_distiller_refresh_hook", False)]:
                    del hooks[key]


def _plain(value: Any, what: str) -> Any:
    """Converts a constructor argument to checkpoint-safe plain data (enum values become their names)."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, ModuleQuantMode):
        return {"activations": _plain(value.activations, what), "weights": _plain(value.weights, what)}
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{what}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"quantizer argument {what} = {value!r} cannot be recorded in a checkpoint: "
                    f"use plain data (numbers, strings, lists, dicts) or enum names")


class Quantizer:
    """Base class of quantizers (see the module docstring for the contract with subclasses).

    Args:
        model: the model to quantize (modified in place by :meth:`prepare_model`).
        optimizer: the optimizer training ``model``; its parameter groups are updated for the float
            copies and any new learned parameters. None when not training.
        bits_activations, bits_weights, bits_bias: default bit widths, an int in 1..32 or None for
            "not quantized".
        overrides: per-layer settings, first match wins (see module docstring).
        train_with_fp_copy: keep a full-precision copy of the quantized parameters for training.
    Raises:
        distiller.errors.ArgumentError: an argument of the wrong type, e.g. a bit width that is not None or an
            int in 1..32 (checked by :func:`distiller.spec.validated`; the message names the argument, the
            expected type and the value); :class:`OverrideError` for an override setting of the wrong type.
        distiller.errors.UnmatchedNameError: an override pattern that matches no module.
    """

    #: Layer types whose ``weight`` / ``bias`` are quantized through ``param_quantization_fn``.
    quantizable_weight_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear,
                                                                       nn.Embedding)
    _init_args: dict[str, Any]
    #: Override setting -> its type (checked by :func:`~distiller.quantization.overrides.check_overrides`);
    #: any other setting must be an argument of the replacement function (:meth:`check_settings`).
    override_types: ClassVar[Mapping[str, Any]] = BITS_TYPES
    #: Whether ``param_quantization_fn`` maps a weight of exactly 0.0 to exactly 0 (linear quantization does: its
    #: zero point is an integer). Pruned weights are zero in the float copy, so a schedule may prune or threshold
    #: only weights whose quantizer keeps them zero (checked by :mod:`distiller.schedule_conflicts`).
    keeps_zero_weights: ClassVar[bool] = True

    def __new__(cls: type[_Q], *args: Any, **kwargs: Any) -> _Q:
        # Record the constructor arguments of the concrete class, for state_dict() and checkpoint replay.
        self = super().__new__(cls)
        params = inspect.signature(cls.__init__).parameters
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        bound.apply_defaults()
        self._init_args = {}
        for name, value in list(bound.arguments.items())[1:]:
            if params[name].kind == inspect.Parameter.VAR_KEYWORD:
                self._init_args.update(value)
            elif name not in ("model", "optimizer"):
                self._init_args[name] = value
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # inspect.signature(cls) would otherwise report __new__'s (*args, **kwargs), hiding the real
        # arguments from the schedule validation in distiller.config.
        super().__init_subclass__(**kwargs)
        cls.__signature__ = _init_signature(cls)  # type: ignore[attr-defined]  # read by inspect.signature

    @validated
    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                 bits_activations: BitsSetting = None, bits_weights: BitsSetting = None, bits_bias: BitsSetting = None,
                 overrides: Optional[Overrides] = None, train_with_fp_copy: bool = False) -> None:
        self.default_qbits = QBits(bits_activations, bits_weights, bits_bias)
        self.overrides = check_overrides(type(self).__name__, overrides, self.override_types)
        self.model = model
        self.optimizer = optimizer
        self.train_with_fp_copy = train_with_fp_copy
        self.replacement_factory: OrderedDict[type[nn.Module], ReplacementFn] = OrderedDict()
        self.default_replacement_fn: Optional[ReplacementFn] = None
        self.replacement_blacklist: list[type[nn.Module]] = []
        self.param_quantization_fn: Optional[ParamQuantizationFn] = None
        self.params_to_quantize: list[ParamToQuant] = []
        self.prepared = False
        names = [name for name, _ in model.named_modules(remove_duplicate=False) if name]
        self._override_matches = {pattern: set(hits) for pattern, hits in
                                  match_names([p for p, _ in self.overrides], names, kind="module").items()}
        self.module_qbits_map, self.module_overrides_map = self._resolve_layer_settings(model)

    # ------------------------------------------------------------------------------ per-layer settings
    def _override_for(self, name: str) -> tuple[Optional[str], dict[str, Any]]:
        """(pattern, settings) of the first override matching ``name`` or an ancestor; (None, {}) if none."""
        candidates = {name}
        parts = name.split(".")
        candidates.update(".".join(parts[:i]) for i in range(1, len(parts)))
        for pattern, settings in self.overrides:
            if candidates.intersection(self._override_matches[pattern]):
                return pattern, settings
        return None, {}

    def _resolve_layer_settings(self, model: nn.Module) -> tuple[dict[str, QBits], dict[str, dict[str, Any]]]:
        qbits_map, overrides_map = {}, {}
        for name, module in model.named_modules(remove_duplicate=False):
            _, settings = self._override_for(name) if name else (None, {})
            bits = self.default_qbits._replace(**{BITS_KEYS[k]: v for k, v in settings.items() if k in BITS_KEYS})
            if not isinstance(module, self.quantizable_weight_types):
                bits = bits._replace(wts=None, bias=None)
            qbits_map[name] = bits
            overrides_map[name] = {k: v for k, v in settings.items() if k not in BITS_KEYS}
        return qbits_map, overrides_map

    def quantized_weight_names(self) -> list[str]:
        """The names (``conv1.weight``) of the weights this quantizer quantizes, known before :meth:`prepare_model`."""
        return [f"{name}.weight" if name else "weight" for name, module in self.model.named_modules()
                if isinstance(module, self.quantizable_weight_types) and self.module_qbits_map[name].wts is not None]

    # ----------------------------------------------------------------------------------- preparation
    def prepare_model(self, dummy_input: Any = None) -> None:
        """Replaces modules, sets up the float copies and updates the optimizer (see module docstring).

        Calling it on a model already prepared by an identically configured quantizer (e.g. the one that
        ``load_checkpoint`` replayed) adopts that model: nothing is replaced again, only this quantizer's
        bookkeeping and the optimizer groups are rebuilt.

        Args:
            dummy_input: an example input, for subclasses that need to run or trace the model.
        Raises:
            RuntimeError: called twice on this quantizer, or the model was prepared with another
                configuration.
            distiller.errors.ArgumentError: a setting that cannot be applied (see :meth:`check_settings`), or a
                ``torch.nn.MultiheadAttention`` layer, before anything changes.
        """
        if self.prepared:
            raise RuntimeError(f"{type(self).__name__}.prepare_model() was already called on this quantizer")
        self._dummy_input_spec = _input_spec(dummy_input)
        existing = [*self.model.parameters(), *self.model.buffers()]
        key = self._model_key()
        previous = _Preparation.of(key)
        if previous is not None:
            mine = self.state_dict()
            if (previous.record["class"], previous.record["args"]) != (mine["class"], mine["args"]):
                raise RuntimeError(f"the model was already prepared by {previous.record['class']} with "
                                   f"other settings ({previous.record['args']}); build a fresh model")
            replaced = previous.replaced
            _Preparation.forget(key)
        else:
            fp_copies = {FP_BKP_PREFIX + "weight", FP_BKP_PREFIX + "bias"}
            if any(name.rsplit(".", 1)[-1] in fp_copies for name, _ in self.model.named_parameters()):
                raise RuntimeError("the model already holds quantization float copies (float_* parameters) from "
                                   "another quantizer; build a fresh model")
            self._refuse_packed_attention()
            self.check_settings()
            replaced = set(self._pre_prepare_model(dummy_input) or ())
            if replaced:
                self.module_qbits_map, self.module_overrides_map = self._resolve_layer_settings(self.model)
            replaced |= self._apply_replacements(self._plan_replacements(skip=replaced))
        self.params_to_quantize = self._collect_params_to_quantize(replaced)
        if self.train_with_fp_copy:
            self._setup_fp_copies()
        if previous is None:
            self._post_prepare_model()
        place_added_tensors(self.model, existing)
        self._update_optimizer()
        key.register_forward_pre_hook(_Preparation(self.state_dict(), set(replaced), type(self)))
        self.prepared = True
        # post-training wrappers quantize their weights themselves: no parameter count to report then
        quantized = f", {len(self.params_to_quantize)} parameters quantized" if self.params_to_quantize else ""
        msglogger.info("%s prepared the model: %d modules replaced%s", type(self).__name__, len(replaced), quantized)

    def check_settings(self) -> None:
        """Validates every per-layer setting against the model, without changing anything.

        :meth:`prepare_model` runs it first; call it alone to reject a configuration before spending time on
        anything else (e.g. calibration).

        Raises:
            OverrideError: an override setting that the replacement of a module it matches does not take,
                or that no replaced module uses.
            distiller.errors.ArgumentError: activation bit widths on a model without modules to quantize them.
        """
        self._plan_replacements(skip=set())

    def _refuse_packed_attention(self) -> None:
        """``torch.nn.MultiheadAttention`` keeps its projections as raw parameters that no quantizer replaces (and
        ``nn.TransformerEncoderLayer`` reads its norms' attributes, which wrappers do not have): refused by name."""
        packed = [name for name, module in self.model.named_modules() if type(module) is nn.MultiheadAttention]
        if packed:
            raise ArgumentError(f"{type(self).__name__}: '{packed[0]}' is a torch.nn.MultiheadAttention, whose "
                                f"projections no quantizer can replace; convert the model first with "
                                f"distiller.transformers.convert_attention(model) (same outputs, nn.Linear "
                                f"projections)")

    def _model_key(self) -> nn.Module:
        return inner_model(self.model)

    def _pre_prepare_model(self, dummy_input: Any) -> Optional[Iterable[str]]:
        """Hook for subclasses: structural changes before module replacement (e.g. BN folding).

        Returns:
            the names of the modules it replaced (they are treated like replacements: not visited again,
            their parameters not quantized by the base class), or None.
        """

    def _post_prepare_model(self) -> None:
        """Hook for subclasses: runs once after the first preparation (e.g. registering buffers)."""

    def _replacement_fn(self, module: nn.Module) -> Optional[ReplacementFn]:
        if isinstance(module, tuple(self.replacement_blacklist)):
            return None
        fn = self.replacement_factory.get(type(module))
        if fn is None and not any(True for _ in module.children()):
            fn = self.default_replacement_fn
        return fn

    def _plan_replacements(self, skip: set[str]) -> list[_PlannedReplacement]:
        """Decides every replacement and checks its override settings, without touching the model.

        Args:
            skip: names of modules already replaced (not visited).
        Returns:
            list of (parent, child attribute name, full name, module, fn, layer overrides).
        Raises:
            OverrideError: a setting the replacement function does not take, or that no replaced module uses.
        """
        plan: list[_PlannedReplacement] = []
        used_patterns: set[Optional[str]] = set()

        def visit(container: nn.Module, prefix: str) -> None:
            for child_name, module in container._modules.items():  # shared modules: every name
                full_name = prefix + child_name
                if module is None or full_name in skip:
                    continue
                qbits, extra = self.module_qbits_map[full_name], self.module_overrides_map[full_name]
                fn = self._replacement_fn(module)
                if fn is not None and (qbits.acts is not None or qbits.wts is not None or extra):
                    self._check_override_keys(fn, full_name, type(module), extra)
                    used_patterns.add(self._override_for(full_name)[0])
                    plan.append((container, child_name, full_name, module, fn, extra))
                else:
                    visit(module, full_name + ".")

        visit(self.model, "")
        for pattern, settings in self.overrides:
            extra = sorted(set(settings) - set(BITS_KEYS))
            if extra and pattern not in used_patterns:
                raise OverrideError(pattern, f"overrides['{pattern}'] sets {extra}, but {type(self).__name__} "
                                             f"replaces none of the modules it matches; remove the setting or fix "
                                             f"the pattern")
        self._check_activations_reachable(plan)
        return plan

    def _check_activations_reachable(self, plan: Sequence[_PlannedReplacement]) -> None:
        """Activation bit widths that no replacement can honour are an error, not float activations."""
        wanted = any(q.acts is not None for q in self.module_qbits_map.values())
        if wanted and not any(self.module_qbits_map[full_name].acts is not None for _, _, full_name, *_ in plan):
            types = ", ".join(sorted(t.__name__ for t in self.replacement_factory)) or "none"
            raise ArgumentError(f"{type(self).__name__}: activation bit widths are set, but the model has no module "
                                f"whose activations it quantizes (it replaces: {types}); functional calls such as "
                                f"torch.relu are invisible to it: use modules (see distiller.modules) or set "
                                f"bits_activations: null")

    def _check_override_keys(self, fn: ReplacementFn, full_name: str, module_type: type[nn.Module],
                             extra: Mapping[str, Any]) -> None:
        params = inspect.signature(fn).parameters
        if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        unknown = sorted(set(extra) - set(params))
        if unknown:
            valid = sorted(set(params) - {"module", "name", "qbits_map"}) + sorted(BITS_KEYS)
            pattern = self._override_for(full_name)[0]
            assert pattern is not None  # extra settings come from an override
            raise OverrideError(pattern, f"overrides['{pattern}']: setting(s) {unknown} for module '{full_name}' "
                                         f"({module_type.__name__}) are not understood by {type(self).__name__}; "
                                         f"valid settings: {valid}", setting=unknown[0])

    def _apply_replacements(self, plan: Sequence[_PlannedReplacement]) -> set[str]:
        """Performs the planned replacements; a module shared under several names is replaced once."""
        done: dict[int, nn.Module] = {}
        replaced: set[str] = set()
        for container, child_name, full_name, module, fn, extra in plan:
            if id(module) not in done:
                new_module = fn(module, full_name, self.module_qbits_map, **extra)
                done[id(module)] = module if new_module is None else new_module
            new_module = done[id(module)]
            if new_module is not module:
                setattr(container, child_name, new_module)
                replaced.add(full_name)
                msglogger.debug("quantizer: %s -> %s", full_name, type(new_module).__name__)
        return replaced

    def _collect_params_to_quantize(self, replaced: set[str]) -> list[ParamToQuant]:
        """Weights/biases of unreplaced quantizable layers with a bit width (replacements own theirs)."""
        result = []
        for name, module in self.model.named_modules():
            if name in replaced or any(name.startswith(r + ".") for r in replaced):
                continue
            if name not in self.module_qbits_map or not isinstance(module, self.quantizable_weight_types):
                continue
            qbits = self.module_qbits_map[name]
            for attr, bits in (("weight", qbits.wts), ("bias", qbits.bias)):
                has_copy = FP_BKP_PREFIX + attr in module._parameters
                if bits is None or (getattr(module, attr, None) is None and not has_copy):
                    continue
                fp_attr = FP_BKP_PREFIX + attr if self.train_with_fp_copy else attr
                result.append(ParamToQuant(module, name, fp_attr, attr, bits))
        return result

    def _setup_fp_copies(self) -> None:
        """Moves each quantized parameter to ``float_<name>`` and registers the quantized-value buffer."""
        by_module: OrderedDict[nn.Module, list[ParamToQuant]] = OrderedDict()
        for ptq in self.params_to_quantize:
            module = ptq.module
            if ptq.fp_attr_name not in module._parameters:
                param = module.get_parameter(ptq.q_attr_name)
                del module._parameters[ptq.q_attr_name]
                module.register_parameter(ptq.fp_attr_name, param)  # same object: optimizer state stays valid
                module.register_buffer(ptq.q_attr_name, param.detach().clone())
            by_module.setdefault(module, []).append(ptq)
        for module, ptqs in by_module.items():
            self._register_refresh_hooks(module, ptqs)

    def _register_refresh_hooks(self, module: nn.Module, ptqs: Sequence[ParamToQuant]) -> None:
        """Recomputes the quantized buffers from the float copies for each forward, inside autograd, and
        stores detached values afterwards (so the module stays deep-copyable and checkpoints hold values)."""
        def quantize_before_forward(mod: nn.Module, args: Any) -> None:
            quantize = self.param_quantization_fn
            assert quantize is not None, f"{type(self).__name__} quantizes parameters without param_quantization_fn"
            for ptq in ptqs:
                setattr(mod, ptq.q_attr_name, quantize(getattr(mod, ptq.fp_attr_name), ptq._replace(module=mod)))

        def detach_after_forward(mod: nn.Module, args: Any, output: Any) -> None:
            for ptq in ptqs:
                mod._buffers[ptq.q_attr_name] = mod.get_buffer(ptq.q_attr_name).detach()

        quantize_before_forward._distiller_refresh_hook = True  # type: ignore[attr-defined]  # see _Preparation.forget
        detach_after_forward._distiller_refresh_hook = True  # type: ignore[attr-defined]
        module.register_forward_pre_hook(quantize_before_forward)
        module.register_forward_hook(detach_after_forward)

    def quantize_params(self) -> None:
        """Quantizes every parameter in ``params_to_quantize`` now (into the buffer with a float copy,
        in place otherwise)."""
        if self.param_quantization_fn is None:
            return
        with torch.no_grad():
            for ptq in self.params_to_quantize:
                quantized = self.param_quantization_fn(getattr(ptq.module, ptq.fp_attr_name), ptq)
                if self.train_with_fp_copy:
                    ptq.module._buffers[ptq.q_attr_name] = quantized
                else:
                    getattr(ptq.module, ptq.q_attr_name).copy_(quantized)

    # ------------------------------------------------------------------------------------- optimizer
    def _get_updated_optimizer_params_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups after preparation.

        Default: the existing groups (with their hyper-parameters) restricted to parameters still in the
        model, plus one group with optimizer defaults for model parameters no group holds yet. Subclasses
        adding learned parameters override it (see PACTQuantizer).

        Returns:
            list of dicts as accepted by ``torch.optim.Optimizer.add_param_group``.
        """
        assert self.optimizer is not None  # called by _update_optimizer only with an optimizer
        model_params = list(self.model.parameters())
        alive = {id(p) for p in model_params}
        groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for group in self.optimizer.param_groups:
            params = [p for p in group["params"] if id(p) in alive]
            seen.update(id(p) for p in params)
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
        new = [p for p in model_params if id(p) not in seen]
        if new:
            groups.append({"params": new})
        return groups

    def _update_optimizer(self) -> None:
        if self.optimizer is None:
            return
        groups = [g for g in self._get_updated_optimizer_params_groups() if g["params"]]
        current = [[id(p) for p in g["params"]] for g in self.optimizer.param_groups]
        if current == [[id(p) for p in g["params"]] for g in groups]:
            return
        self.optimizer.param_groups.clear()
        for group in groups:
            self.optimizer.add_param_group(group)

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain-data description (class name, constructor arguments) that re-creates this quantizer.

        ``overrides`` is stored as a list of ``[pattern, settings]`` pairs and enum values by name, so the
        record loads with ``torch.load(weights_only=True)``; :mod:`distiller.quantization.replay` uses it.
        """
        args = {}
        for name, value in self._init_args.items():
            if name == "overrides":
                value = [[pattern, settings] for pattern, settings in self.overrides]
            args[name] = _plain(copy.copy(value), name)
        state: dict[str, Any] = {"class": type(self).__name__, "args": args}
        spec = getattr(self, "_dummy_input_spec", None)
        if spec is not None:
            state["dummy_input"] = spec
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore: the quantizer's learned state lives in the model's parameters and buffers."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(bits_activations={self.default_qbits.acts}, bits_weights="
                f"{self.default_qbits.wts}, bits_bias={self.default_qbits.bias}, overrides={len(self.overrides)})")


def preparing_quantizer_class(model: nn.Module) -> Optional[type[Quantizer]]:
    """The class of the quantizer that prepared ``model`` (e.g. to ask its :attr:`Quantizer.keeps_zero_weights`),
    or None for a model that no quantizer prepared."""
    preparation = _Preparation.of(inner_model(model))
    return None if preparation is None else preparation.quantizer_class


def inner_model(model: nn.Module) -> nn.Module:
    """``model`` without its DataParallel / DistributedDataParallel wrapper."""
    return typing.cast(nn.Module, model.module) if model_is_parallel(model) else model


def _init_signature(cls: type[Any]) -> inspect.Signature:
    signature = inspect.signature(cls.__init__)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


Quantizer.__signature__ = _init_signature(Quantizer)  # type: ignore[attr-defined]  # read by inspect.signature





#: Shape and dtype of an example input (``{'shape': [...], 'dtype': 'float32'}``), or a list of them.
InputSpec = Union[dict[str, Any], list[Any], None]


def _input_spec(dummy_input: Any) -> InputSpec:
    """Shape/dtype description of an example input, enough to rebuild a stand-in when replaying."""
    if dummy_input is None:
        return None
    if isinstance(dummy_input, torch.Tensor):
        return {"shape": list(dummy_input.shape), "dtype": str(dummy_input.dtype).replace("torch.", "")}
    if isinstance(dummy_input, (list, tuple)):
        return [_input_spec(x) for x in dummy_input]
    raise TypeError(f"dummy_input must be a tensor or a tuple of tensors, got {type(dummy_input).__name__}")


def input_from_spec(spec: InputSpec, device: Optional[Union[str, torch.device]] = None) -> Any:
    """Builds a zero tensor (or tuple) matching a spec from :func:`_input_spec`."""
    if spec is None:
        return None
    if isinstance(spec, list):
        return tuple(input_from_spec(s, device) for s in spec)
    return torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"]), device=device)
