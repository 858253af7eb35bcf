"""Post-training range-linear quantization (:class:`PostTrainLinearQuantizer`)."""
from __future__ import annotations

import copy
import functools
import logging
import os
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional, TypeGuard, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ... import modules as dm
from ...data_loggers.collector import load_quant_stats
from ...errors import ArgumentError, first_few, suggest
from ...graph.capture import GraphCaptureError
from ...registry import register_quantizer
from ...spec import BitWidth, validated
from ...utils import normalize_module_name
from ..base import QBits, Quantizer, inner_model
from ..bn_fold import FoldableLayer, find_batchnorm_pairs
from ..fp8 import FP8LinearWrapper, FP8Scaling
from ..overrides import BITS_KEYS, BITS_TYPES, BitsSetting, CheckedBy, OverrideError, Overrides, check_overrides
from ..q_utils import (ClipMode, ClipModeArg, LinearQuantMode, PositiveReal, QuantModeArg, parse_clip_mode,
                       verify_quant_mode)
from .eltwise_wrappers import (RangeLinearQuantConcatWrapper, RangeLinearQuantEltwiseAddWrapper,
                               RangeLinearQuantEltwiseMultWrapper)
from .input_overrides import InputQuantSettings, check_input_overrides, input_quant_settings
from .layer_overrides import (LAYER_OVERRIDE_TYPES, WEIGHTED_LAYERS, fake_problem, float_compute,
                              fused_recurrent_problem, identity_problem, identity_producers,
                              inputs_without_quantized_producer)
from .param_wrappers import (RangeLinearEmbeddingWrapper, RangeLinearQuantMatmulWrapper,
                             RangeLinearQuantParamLayerWrapper)
from .ptq_graph import (GRID_PRESERVING_MODULES, SAME_RANGE_AS_INPUT_MODULES, QuantizationGraph, analyze_model,
                        effective_stats, fold_batch_norm)
from .tied_weights import untie_shared_weights
from .wrappers import FP16Wrapper, FPWrapper, ModuleStats, RangeLinearFakeQuantWrapper, RangeLinearQuantWrapper

__all__ = ["PostTrainLinearQuantizer"]

logger = logging.getLogger(__name__)

_PARAM_LAYERS = WEIGHTED_LAYERS
_MULTI_INPUT_WRAPPERS = {dm.EltwiseAdd: RangeLinearQuantEltwiseAddWrapper,
                         dm.EltwiseMult: RangeLinearQuantEltwiseMultWrapper,
                         dm.Concat: RangeLinearQuantConcatWrapper}
# Modules without a range of their own: kept float (their outputs stay on the input's grid).
_KEEP_TYPES = GRID_PRESERVING_MODULES + (dm.Split, dm.Chunk, dm.View)
_OVERRIDE_KEYS = ("bits_accum", "mode", "clip_acts", "clip_n_stds", "clip_half_range", "per_channel_wts",
                  "scale_approx_mult_bits", "fp16", "fpq_module", "also_clip_weights", "fp8", "fp8_scaling",
                  "input_overrides", "quantize_inputs", "inputs_quant_auto_fallback", *LAYER_OVERRIDE_TYPES)
#: Settings given by overrides only (not constructor arguments), and their types.
_OVERRIDE_ONLY_TYPES: dict[str, Any] = {"input_overrides": CheckedBy(check_input_overrides), "quantize_inputs": bool,
                                        **LAYER_OVERRIDE_TYPES}
#: Decision kinds whose wrapper always quantizes its inputs.
_INTEGER_INPUT_KINDS = ("param", "matmul", "multi")
#: What each decision kind does with the layer's inputs, for messages.
_KIND_INPUTS = {"keep": "is not wrapped (its output stays on its input's grid or in float)",
                "fp8": "is quantized to FP8, its inputs with FP8 scales", "fp16": "runs in float16",
                "fpq": "runs in floating point (fpq_module)", "embedding": "is an embedding: its inputs are indices",
                "param": "always quantizes its input", "matmul": "always quantizes its inputs",
                "multi": "always quantizes its inputs", "fake": "runs in float on its inputs as they come",
                "identity": "becomes an identity (make_identity)"}
#: ``fpq_module`` values: the precision (bits) of floating-point layers.
FPPrecision = Literal[16, 32, 64]
_FP_DTYPES = {32: torch.float32, 64: torch.float64}
#: Decisions whose wrapper replaces the layer's weight by its integers in place.
_IN_PLACE_KINDS = ("param", "embedding")
# Decisions whose wrapper uses static activation ranges (and so needs calibration statistics).
_STATIC_KINDS = ("param", "matmul", "multi", "fake")
#: How a layer is quantized: a kind ('keep', 'fp8', 'fp16', 'fpq', 'embedding', 'param', 'matmul', 'multi', 'fake',
#: 'identity') and the wrapper's arguments.
_Decision = tuple[str, dict[str, Any]]
#: Calibration statistics: a YAML file from ``collect_quant_stats`` or its content, ``{module: ModuleStats}``.
StatsSource = Union[str, os.PathLike, Mapping[str, ModuleStats]]


@register_quantizer(trains=False)  # post-training only: a training schedule refuses it
class PostTrainLinearQuantizer(Quantizer):
    """Quantizes a trained model for inference with range-linear integer arithmetic, no retraining.

    ``prepare_model()`` turns functional adds/concats into ``distiller.modules`` (already done by the
    constructor), folds BatchNorm layers into the convolution/linear layer before them, fuses ReLUs and ReLU6s
    into their producer's output range (a ReLU6 keeps its own quantization wrapper, which then changes no
    value) and wraps: conv/linear -> :class:`RangeLinearQuantParamLayerWrapper`,
    ``Matmul``/``BatchMatmul`` -> :class:`RangeLinearQuantMatmulWrapper`, ``EltwiseAdd``/``EltwiseMult``/
    ``Concat`` -> their wrappers, ``nn.Embedding`` -> :class:`RangeLinearEmbeddingWrapper`, other layers
    with a range of their own -> :class:`RangeLinearFakeQuantWrapper`; ReLU, max-pooling, reshapes and
    dropout keep their input's grid and stay as they are.

    Args:
        model: the float model (modified in place).
        bits_activations, bits_parameters, bits_accum: bit widths (None: not quantized).
        overrides: per-layer settings, first matching pattern wins (see :class:`Quantizer`); keys:
            ``bits_activations``, ``bits_weights``, ``bits_accum``, ``mode``, ``clip_acts``, ``clip_n_stds``,
            ``clip_half_range``, ``per_channel_wts``, ``scale_approx_mult_bits``, ``fp16``, ``fpq_module``,
            ``also_clip_weights``, ``fp8``, ``fp8_scaling``, and Distiller's input settings:
            ``input_overrides`` (``{index: settings}``, see
            :mod:`~distiller.quantization.range_linear.input_overrides`) for a layer that quantizes its inputs
            (conv/linear, matmul, add/mult/concat, or a fake-quantized layer with ``quantize_inputs``); such an
            input is quantized with these settings and its own statistics, never with its producer's
            parameters. ``quantize_inputs: true`` makes a fake-quantized layer (float compute, quantized
            output: e.g. a Tanh or Softmax) quantize its inputs too, which matters where it reads the model's
            input or a float layer's output (inputs from a quantized layer keep that layer's parameters);
            Distiller did so by default, here it is off unless asked for. ``inputs_quant_auto_fallback`` per
            layer; ``fake: true`` (float compute, float weights, quantized output: for any layer, ReLU and
            max-pooling included; ``fake: false`` leaves a layer that would be fake-quantized in float) and
            ``make_identity: true`` (a ReLU becomes ``nn.Identity``, the quantized layer before it applies it):
            see :mod:`~distiller.quantization.range_linear.layer_overrides`.
        mode: LinearQuantMode, its name, 'sym' / 'sym_restr' / 'asym_s' / 'asym_u', or
            ``{'activations': mode, 'weights': mode}``.
        clip_acts: ClipMode or its name (NONE, AVG, N_STD, GAUSS, LAPLACE).
        per_channel_wts: one weight range per output channel.
        model_activation_stats: calibration statistics (dict or YAML path from ``collect_quant_stats``);
            None quantizes activations with ranges measured on each batch (dynamic).
        fp16: simulate float16 for every layer instead of integers.
        clip_n_stds: standard deviations for ``clip_acts: N_STD``.
        clip_half_range: clip only the upper end of activation ranges.
        scale_approx_mult_bits: approximate requantization factors by integer multiply + shift.
        inputs_quant_auto_fallback: a layer input produced by a quantized layer in the same activation format
            (possibly through ReLU, max-pool, reshape, dropout) reuses that layer's output parameters either way.
            Any other input without ``input_overrides`` (the model's input, a float layer's output) is quantized
            with its own statistics and the layer's output settings (True), or is an error (False: every such
            input needs ``input_overrides``), as in Distiller.
        fpq_module: keep every layer (except those overridden) in floating point of this many bits instead of
            integers, whatever the bit widths: 16 as ``fp16``; 32 or 64 runs the layers in float32 / float64
            (:class:`~distiller.quantization.range_linear.wrappers.FPWrapper`). Distiller's argument.
        save_fp_weights: keep float weights in ``float_weight`` buffers (to re-quantize later).
        also_clip_weights: clip the weights' ranges with ``clip_acts`` too (N_STD, GAUSS, LAPLACE).
        fp8: quantize ``nn.Linear`` layers to FP8 E4M3 (see :mod:`distiller.quantization.fp8`).
        fp8_scaling: ``'per_tensor'`` or ``'per_row'`` FP8 scales.

    A ``--qe-config-file`` holds the instance under ``quantizers:``.

    YAML::

        post_train_quantizer:
          class: PostTrainLinearQuantizer
          bits_activations: 8
          bits_parameters: 8
          bits_accum: 32
          mode: {activations: ASYMMETRIC_UNSIGNED, weights: SYMMETRIC}
          per_channel_wts: true
          clip_acts: AVG
          # model_activation_stats: stats/acts_quantization_stats.yaml   # calibrated (static) activation ranges
          overrides:
            fc: {clip_acts: NONE}
            conv1:
              input_overrides: {0: {bits_activations: 8, clip_acts: NONE}}   # the model's input, unclipped

    Raises:
        distiller.errors.ArgumentError: an argument of the wrong type (bit widths outside 1..32, unknown
            mode/clip strings, ...: checked by :func:`distiller.spec.validated` from the annotations, the
            message names the argument, the expected type and the value), ``clip_acts: N_STD`` without
            ``clip_n_stds``, statistics naming modules the model does not have;
            :class:`~distiller.quantization.OverrideError` for a bad override (an unknown setting, or a setting
            of the wrong type: a setting has the type of the argument of the same name);
            :class:`~distiller.errors.UnmatchedNameError` for an override matching nothing.
        distiller.errors.InputFileError: a statistics file that does not exist.
    """

    @validated
    def __init__(self, model: nn.Module, bits_activations: BitsSetting = 8, bits_parameters: BitsSetting = 8,
                 bits_accum: BitWidth = 32, overrides: Optional[Overrides] = None,
                 mode: QuantModeArg = LinearQuantMode.SYMMETRIC, clip_acts: ClipModeArg = ClipMode.NONE,
                 per_channel_wts: bool = False, model_activation_stats: Optional[StatsSource] = None,
                 fp16: bool = False, clip_n_stds: Optional[PositiveReal] = None, clip_half_range: bool = False,
                 scale_approx_mult_bits: BitsSetting = None, inputs_quant_auto_fallback: bool = True,
                 fpq_module: Optional[FPPrecision] = None, save_fp_weights: bool = False,
                 also_clip_weights: bool = False, fp8: bool = False, fp8_scaling: FP8Scaling = "per_tensor") -> None:
        # Everything is checked before the constructor touches the model.
        self.mode = verify_quant_mode(mode)
        self.clip_acts = parse_clip_mode(clip_acts)
        self.bits_accum = bits_accum
        self.scale_approx_mult_bits = scale_approx_mult_bits
        if self.clip_acts == ClipMode.N_STD and clip_n_stds is None:
            raise ArgumentError("clip_acts N_STD needs clip_n_stds (the number of standard deviations)",
                                argument="clip_n_stds")
        for pattern, settings in check_overrides(type(self).__name__, overrides, self.override_types):
            self._check_override_keys_known(pattern, settings)
        self.model_activation_stats: Optional[dict[str, ModuleStats]] = None
        if model_activation_stats is not None:
            self.model_activation_stats = {normalize_module_name(name): entry for name, entry in
                                           load_quant_stats(model_activation_stats).items()}
        inner = inner_model(model)
        dm.convert_functional_ops(inner)
        if self.model_activation_stats is not None:
            self._check_stats_names(inner, self.model_activation_stats)
        super().__init__(model, bits_activations=bits_activations, bits_weights=bits_parameters,
                         bits_bias=self.bits_accum, overrides=overrides)
        self.inputs_quant_auto_fallback, self.save_fp_weights = inputs_quant_auto_fallback, save_fp_weights
        self._defaults = dict(bits_accum=self.bits_accum, mode=self.mode, clip_acts=self.clip_acts,
                              clip_n_stds=clip_n_stds, clip_half_range=clip_half_range,
                              per_channel_wts=per_channel_wts, scale_approx_mult_bits=self.scale_approx_mult_bits,
                              fp16=fp16, fpq_module=fpq_module, also_clip_weights=also_clip_weights, fp8=fp8,
                              fp8_scaling=fp8_scaling, input_overrides=None, quantize_inputs=False)
        self._stats: Optional[dict[str, dict[str, Any]]] = None
        self._graph = QuantizationGraph()
        self._decisions: dict[str, _Decision] = {}
        #: The layers that apply the ReLU of a ``make_identity`` (layer -> the ReLU), set with the decisions.
        self._fused_relus: dict[str, str] = {}
        self._planned_folds: Optional[list[tuple[str, str]]] = None
        #: (layer, input index) -> the producing layer whose output parameters that input reuses.
        self.shared_inputs: dict[tuple[str, int], str] = {}
        self.default_replacement_fn = self._replace
        for layer_type in _PARAM_LAYERS + (dm.Matmul, dm.BatchMatmul, nn.Embedding) + tuple(_MULTI_INPUT_WRAPPERS):
            self.replacement_factory[layer_type] = self._replace

    # ----------------------------------------------------------------------------------- validation
    @staticmethod
    def _check_override_keys_known(pattern: str, settings: Mapping[str, Any]) -> None:
        unknown = sorted(set(settings) - set(_OVERRIDE_KEYS) - set(BITS_KEYS))
        if unknown:
            raise OverrideError(pattern, f"overrides['{pattern}']: unknown setting(s) {unknown}; valid settings: "
                                         f"bits_activations, bits_weights, {', '.join(_OVERRIDE_KEYS)}",
                                setting=unknown[0])

    def _layer_error(self, name: str, message: str, setting: str, inner: tuple[Any, ...] = ()) -> ArgumentError:
        """The error for ``setting`` of layer ``name`` (at ``inner`` inside its value): an :class:`OverrideError`
        naming the override that gave it, or an ``ArgumentError`` naming the argument when it comes from the
        constructor's defaults."""
        pattern = self._override_for(name)[0]
        return (ArgumentError(message, argument=setting, location=inner) if pattern is None
                else OverrideError(pattern, message, setting, inner))

    @staticmethod
    def _check_stats_names(model: nn.Module, stats: Mapping[str, ModuleStats]) -> None:
        names = [name for name, _ in model.named_modules() if name]
        unknown = [name for name in stats if name not in set(names)]
        if unknown:
            hints = [f"'{n}'" + (f" (did you mean {suggest(n, names)}?)" if suggest(n, names) else "")
                     for n in unknown[:5]]
            raise ArgumentError(f"calibration statistics name {len(unknown)} module(s) that the model does not have: "
                                f"{', '.join(hints)}{' ...' if len(unknown) > 5 else ''}. Collect the statistics on "
                                f"this model with distiller.data_loggers.collect_quant_stats",
                                argument="model_activation_stats")

    def check_settings(self) -> None:
        """As :meth:`Quantizer.check_settings`, and plans every layer from the model's graph (BatchNorm folding,
        ReLU/ReLU6 fusion, where each input comes from) and decides how it is quantized, which rejects e.g. ``fp8`` on
        a layer that is not ``nn.Linear``, ``clip_acts: N_STD`` without ``clip_n_stds``, ``input_overrides`` of
        an input a layer does not have, ``fake``/``make_identity`` where they cannot apply, inputs that
        ``inputs_quant_auto_fallback: false`` leaves without parameters and, with calibration statistics,
        layers they miss. The model does not change."""
        self._planned_folds = self._plan_layers()

    def _plan_layers(self) -> list[tuple[str, str]]:
        """Decides how every layer is quantized and checks the decisions against the graph and the statistics.

        Returns:
            the (layer, BatchNorm) pairs to fold.
        """
        inner = self._model_key()
        if any(isinstance(m, _WRAPPER_TYPES) for m in inner.modules()):
            raise RuntimeError("the model already holds post-training quantization wrappers; build a fresh model")
        pairs = self._batchnorm_pairs(inner)
        folded_into = {bn: layer for layer, bn in pairs}  # the graph sees these BatchNorms as identities
        plan = [(normalize_module_name(full_name), full_name, module, extra)
                for _, _, full_name, module, _, extra in self._plan_replacements(skip=set())]
        fake_grid_keepers = {name for name, _, module, extra in plan
                             if extra.get("fake") and isinstance(module, GRID_PRESERVING_MODULES)}
        self._graph = analyze_model(inner, pass_through=folded_into, producers=fake_grid_keepers)
        self._stats = (None if self.model_activation_stats is None
                       else effective_stats(self.model_activation_stats, pairs, self._graph))
        self._decisions, full_names, strict = {}, {}, []
        for name, full_name, module, extra in plan:
            if name in folded_into:
                stray = sorted(set(extra) & set(LAYER_OVERRIDE_TYPES))
                if stray:
                    raise self._layer_error(full_name, f"{stray[0]}: '{name}' is folded into '{folded_into[name]}' "
                                                       f"(BatchNorm folding); set it there", stray[0])
                continue
            self._decisions[name] = self._decide(module, full_name, self.module_qbits_map, **extra)
            full_names[name] = full_name
            if not extra.get("inputs_quant_auto_fallback", self.inputs_quant_auto_fallback):
                strict.append(name)
        self._fused_relus = self._check_identities(full_names)
        self._check_strict_inputs(full_names, strict)
        self._check_static_coverage()
        return pairs

    # ------------------------------------------------------------------------------ preparation
    def _pre_prepare_model(self, dummy_input: Any) -> set[str]:
        """Folds the BatchNorms of the plan that :meth:`check_settings` (run by ``prepare_model`` right before)
        made and checked.

        Returns:
            the names of the folded BatchNorm layers (now ``nn.Identity``).
        """
        inner = self._model_key()
        prefix = "module." if inner is not self.model else ""
        pairs = self._planned_folds if self._planned_folds is not None else self._plan_layers()
        self._planned_folds = None
        untie_shared_weights(inner, [name for name, (kind, _) in self._decisions.items() if kind in _IN_PLACE_KINDS])
        folded = {bn for _, bn in pairs}
        for layer_name, bn_name in pairs:
            # find_batchnorm_pairs only pairs foldable layers with BatchNorms that track statistics
            fold_batch_norm(typing.cast(FoldableLayer, inner.get_submodule(layer_name)),
                            typing.cast(_BatchNorm, inner.get_submodule(bn_name)))
            parent, _, child = bn_name.rpartition(".")
            setattr(inner.get_submodule(parent) if parent else inner, child, nn.Identity())
        logger.info("PostTrainLinearQuantizer: folded %d BatchNorm layer(s); %s activation ranges", len(pairs),
                    "static" if self._stats is not None else "dynamic")
        return {prefix + bn for bn in folded}

    def _post_prepare_model(self) -> None:
        self.share_producer_quant_params()

    def _batchnorm_pairs(self, model: nn.Module) -> list[tuple[str, str]]:
        if not any(isinstance(module, _BatchNorm) for module in model.modules()):
            return []  # nothing to fold: no need to trace (nor to warn when tracing fails)
        try:
            return find_batchnorm_pairs(model)
        except GraphCaptureError as err:
            logger.warning("BatchNorm layers are not folded: %s", err)
            return []

    # ------------------------------------------------------------------------------- decisions
    def _decide(self, module: nn.Module, name: str, qbits_map: Mapping[str, QBits],
                **layer_overrides: Any) -> _Decision:
        """Returns (kind, settings): how layer ``name`` is quantized. Raises on impossible settings."""
        kind, settings = self._decide_kind(module, name, qbits_map, **layer_overrides)
        return kind, self._with_input_settings(module, name, kind, settings, layer_overrides)

    def _with_input_settings(self, module: nn.Module, name: str, kind: str, settings: dict[str, Any],
                             layer_overrides: Mapping[str, Any]) -> dict[str, Any]:
        """``settings`` with the layer's ``quantize_inputs`` and ``input_overrides``, which must fit its wrapper."""
        quantize_inputs, overrides = layer_overrides.get("quantize_inputs"), layer_overrides.get("input_overrides")
        what = f"'{name}' ({type(module).__name__})"
        if kind == "fake":
            settings = dict(settings, quantize_inputs=bool(quantize_inputs))
        elif quantize_inputs is not None:
            raise self._layer_error(name, f"quantize_inputs applies to fake-quantized layers (float compute, quantized "
                                          f"output); {what} {_KIND_INPUTS[kind]}", "quantize_inputs")
        reason = self._why_no_quantized_inputs(kind, settings)
        for key in ("input_overrides", "inputs_quant_auto_fallback"):
            if reason is not None and layer_overrides.get(key) not in (None, {}):
                raise self._layer_error(name, f"{key}: {what} {reason}", key)
        if not overrides:
            return settings
        output = InputQuantSettings(settings["num_bits_acts"], verify_quant_mode(settings["mode"]).activations,
                                    parse_clip_mode(settings["clip_acts"]), settings["clip_n_stds"],
                                    settings["clip_half_range"])
        count = {"param": 1, "matmul": 2}.get(kind, self._graph.num_inputs.get(normalize_module_name(name)))
        try:
            input_quant_settings(output, overrides, count)
        except ArgumentError as err:
            raise self._layer_error(name, f"layer {what}: {err}", "input_overrides", err.location) from None
        return dict(settings, input_overrides=overrides)

    @staticmethod
    def _why_no_quantized_inputs(kind: str, settings: Mapping[str, Any]) -> Optional[str]:
        """Why a layer of this decision quantizes no inputs (for messages), or None when it does."""
        if kind in _INTEGER_INPUT_KINDS:
            return "has float activations (bits_activations: null)" if settings["num_bits_acts"] is None else None
        if kind == "fake":
            return None if settings["quantize_inputs"] else f"{_KIND_INPUTS[kind]}; set quantize_inputs: true for it"
        return _KIND_INPUTS[kind]

    def _decide_kind(self, module: nn.Module, name: str, qbits_map: Mapping[str, QBits],
                     **layer_overrides: Any) -> _Decision:
        o = {**self._defaults, **layer_overrides}
        bits = qbits_map[name]
        given = self._override_for(name)[1]
        if layer_overrides.get("make_identity"):
            problem = identity_problem(module, name, given)
            if problem is not None:
                raise self._layer_error(name, problem, "make_identity")
            return "identity", {}
        if layer_overrides.get("fake"):
            blame = fake_problem(module, name, bits, given)
            if blame is not None:
                raise self._layer_error(name, blame[1], blame[0])
            precision = o["fpq_module"] if o["fpq_module"] is not None else (16 if o["fp16"] else None)
            return "fake", dict(self._activation_settings(name, bits, o), fpq_module=precision)
        if isinstance(module, _KEEP_TYPES):
            return "keep", {}
        if o["fp8"] and (isinstance(module, nn.Linear) or "fp8" in layer_overrides):
            if not isinstance(module, nn.Linear):
                raise self._layer_error(name, f"fp8 quantization applies to nn.Linear layers; '{name}' is "
                                              f"{type(module).__name__} (restrict the override pattern)", "fp8")
            return "fp8", {"scaling": o["fp8_scaling"]}
        if o["fpq_module"] is not None:
            return ("fp16", {}) if o["fpq_module"] == 16 else ("fpq", {"dtype": _FP_DTYPES[o["fpq_module"]]})
        if o["fp16"]:
            return "fp16", {}
        if isinstance(module, nn.Embedding):
            return ("embedding", {"num_bits": bits.wts, "mode": verify_quant_mode(o["mode"]).weights,
                                  "per_channel_wts": o["per_channel_wts"]}) if bits.wts is not None else ("keep", {})
        settings = self._activation_settings(name, bits, o)
        if isinstance(module, _PARAM_LAYERS) and bits.wts is not None:
            if o["also_clip_weights"] and parse_clip_mode(settings["clip_acts"]) == ClipMode.AVG:
                raise self._layer_error(name, f"layer '{name}': also_clip_weights cannot clip weights with clip_acts "
                                              f"AVG (an average over batches); use N_STD, GAUSS or LAPLACE",
                                        "also_clip_weights")
            return "param", dict(settings, num_bits_params=bits.wts, per_channel_wts=o["per_channel_wts"],
                                 also_clip_weights=o["also_clip_weights"])
        if bits.acts is None:
            return "keep", {}
        if isinstance(module, (dm.Matmul, dm.BatchMatmul)):
            return "matmul", settings
        if type(module) in _MULTI_INPUT_WRAPPERS:
            return "multi", settings
        if layer_overrides.get("fake") is False:
            return "keep", {}
        recurrent = fused_recurrent_problem(module, name)
        if recurrent is not None:
            raise self._layer_error(name, recurrent, "bits_activations")
        return "fake", dict(settings, fpq_module=None)

    def _activation_settings(self, name: str, bits: QBits, o: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments of layer ``name``'s wrapper that quantize activations, from its settings ``o``."""
        settings = dict(num_bits_acts=bits.acts, num_bits_accum=o["bits_accum"], mode=o["mode"],
                        clip_acts=o["clip_acts"], clip_n_stds=o["clip_n_stds"], clip_half_range=o["clip_half_range"],
                        scale_approx_mult_bits=o["scale_approx_mult_bits"])
        if parse_clip_mode(settings["clip_acts"]) == ClipMode.N_STD and settings["clip_n_stds"] is None:
            raise self._layer_error(name, f"layer '{name}': clip_acts N_STD needs clip_n_stds", "clip_acts")
        return settings

    def _needs_stats(self, kind: str, settings: Mapping[str, Any]) -> bool:
        return self._stats is not None and kind in _STATIC_KINDS and settings["num_bits_acts"] is not None

    def _quantized_like(self, name: str, like: Optional[Mapping[str, Any]] = None) -> bool:
        """Whether layer ``name`` quantizes its output (in the activation format, bits and mode, of ``like``)."""
        kind, settings = self._decisions.get(name, ("keep", {}))
        if kind not in _STATIC_KINDS or settings["num_bits_acts"] is None:
            return False
        return like is None or (settings["num_bits_acts"] == like["num_bits_acts"] and verify_quant_mode(
            settings["mode"]).activations == verify_quant_mode(like["mode"]).activations)

    def _gives_static_output(self, name: str, like: Mapping[str, Any]) -> bool:
        return self._stats is not None and self._quantized_like(name, like)

    def _check_identities(self, full_names: Mapping[str, str]) -> dict[str, str]:
        """The layers that apply the ReLU of a ``make_identity`` (layer -> ReLU)."""
        fused: dict[str, str] = {}
        for relu in (name for name, (kind, _) in self._decisions.items() if kind == "identity"):
            producers, problem = identity_producers(self._graph, relu, self._quantized_like)
            if problem is not None:
                raise self._layer_error(full_names[relu], problem, "make_identity")
            fused.update(dict.fromkeys(producers, relu))
        return fused

    def _check_strict_inputs(self, full_names: Mapping[str, str], strict: Sequence[str]) -> None:
        """Every input of the layers in ``strict`` (``inputs_quant_auto_fallback`` off) comes from a layer that
        quantizes its output in their format, or has ``input_overrides``."""
        problems: dict[str, list[str]] = {}
        for name in strict:
            kind, settings = self._decisions[name]
            if self._why_no_quantized_inputs(kind, settings) is None:
                count = {"param": 1, "matmul": 2}.get(kind, self._graph.num_inputs.get(name, 1))
                problems[name] = inputs_without_quantized_producer(
                    self._graph, name, count, settings.get("input_overrides") or {},
                    functools.partial(self._quantized_like, like=settings))
        fix = ("give such inputs input_overrides (e.g. {0: {from_output: true}}), quantize their producers, or set "
               "inputs_quant_auto_fallback: true")
        for name, found in problems.items():
            pattern, given = self._override_for(full_names[name])
            if found and pattern is not None and "inputs_quant_auto_fallback" in given:
                raise OverrideError(pattern, f"{'; '.join(found)}, and inputs_quant_auto_fallback is false for it: "
                                             f"{fix}", "inputs_quant_auto_fallback")
        found = [text for texts in problems.values() for text in texts]
        if found:
            raise ArgumentError(f"inputs_quant_auto_fallback is false, but {first_few(found, 3, '; ')}: {fix}",
                                argument="inputs_quant_auto_fallback")

    def _check_static_coverage(self) -> None:
        """Every statically quantized layer has the statistics it needs (or a producer to take them from)."""
        if self._stats is None:
            return
        problems = []
        for name, (kind, settings) in self._decisions.items():
            if not self._needs_stats(kind, settings):
                continue
            stats = self._stats.get(name)
            if stats is None:
                if not self._graph.traced or name in self._graph.order:
                    problems.append(f"'{name}' (no statistics at all)")
                continue
            if not stats["output"]:
                problems.append(f"'{name}' output")
            if kind == "fake" and not settings["quantize_inputs"]:
                continue
            count = self._graph.num_inputs.get(name, len(stats["inputs"]) or 1)
            sources = self._graph.input_sources.get(name, {})
            overridden = settings.get("input_overrides") or {}
            for index in range(count):
                shared = (index in sources and index not in overridden
                          and self._gives_static_output(sources[index], settings))
                if index not in stats["inputs"] and not shared:
                    problems.append(f"'{name}' input {index}")
        if problems:
            raise ArgumentError(f"calibration statistics are missing for {', '.join(problems[:8])}"
                                f"{' ...' if len(problems) > 8 else ''}; collect them on this model with "
                                f"distiller.data_loggers.collect_quant_stats, or exclude these layers with "
                                f"overrides {{<name>: {{bits_activations: null}}}}", argument="model_activation_stats")

    def _replace(self, module: nn.Module, name: str, qbits_map: Mapping[str, QBits],
                 **layer_overrides: Any) -> Optional[nn.Module]:
        replacement = self._build_replacement(module, name, qbits_map, **layer_overrides)
        return replacement.train(module.training) if replacement is not None else None

    def _build_replacement(self, module: nn.Module, name: str, qbits_map: Mapping[str, QBits],
                           **layer_overrides: Any) -> Optional[nn.Module]:
        kind, settings = (self._decisions.get(normalize_module_name(name))
                          or self._decide(module, name, qbits_map, **layer_overrides))
        name = normalize_module_name(name)
        if kind == "keep":
            return None
        if kind == "identity":
            return nn.Identity()
        if kind == "fp8":
            return FP8LinearWrapper(module, settings["scaling"], self.layer_activation_stats(name))
        if kind == "fp16":
            return FP16Wrapper(module)
        if kind == "fpq":
            return FPWrapper(module, settings["dtype"])
        if kind == "embedding":
            return RangeLinearEmbeddingWrapper(module, save_fp_weights=self.save_fp_weights, **settings)
        stats = self.layer_activation_stats(name) if self._needs_stats(kind, settings) else None
        if self._stats is not None and stats is None and settings["num_bits_acts"] is not None:
            logger.info("'%s' did not run during calibration; it stays float", name)
            return None
        wrapper: RangeLinearQuantWrapper
        if kind == "param":
            wrapper = RangeLinearQuantParamLayerWrapper(module, activation_stats=stats,
                                                        save_fp_weights=self.save_fp_weights, **settings)
        elif kind == "matmul":
            wrapper = RangeLinearQuantMatmulWrapper(module, activation_stats=stats, **settings)
        elif kind == "multi":
            wrapper = _MULTI_INPUT_WRAPPERS[type(module)](module, activation_stats=stats,
                                                          num_inputs=self._graph.num_inputs.get(name), **settings)
        else:
            arguments = {key: value for key, value in settings.items() if key != "fpq_module"}
            wrapper = RangeLinearFakeQuantWrapper(float_compute(module, settings["fpq_module"]), activation_stats=stats,
                                                  num_inputs=self._graph.num_inputs.get(name), **arguments)
        if name in self._fused_relus:
            wrapper.fuse_relu()
        return wrapper

    def layer_activation_stats(self, name: str) -> Optional[dict[str, Any]]:
        """The statistics layer ``name`` was quantized with (after BN folding and ReLU/ReLU6 fusion), or None."""
        return None if self._stats is None else self._stats.get(normalize_module_name(name))

    def share_producer_quant_params(self) -> None:
        """Inputs reached unchanged from a quantized layer take its output parameters (unless ``input_overrides``
        set their own); average pooling keeps its input's parameters (as integer kernels do). Called by
        ``prepare_model``; call it again after changing output parameters (LAPQ does)."""
        modules = dict(self._model_key().named_modules())
        self.shared_inputs = {}
        for name in self._graph.order:
            wrapper = modules.get(name)
            if not isinstance(wrapper, RangeLinearQuantWrapper) or not wrapper.preset_act_stats:
                continue
            for index, source in self._graph.input_sources.get(name, {}).items():
                producer = modules.get(source)
                if index in wrapper.input_settings or not _same_activation_format(producer, wrapper):
                    continue
                if (isinstance(wrapper, RangeLinearFakeQuantWrapper) and index == 0
                        and isinstance(wrapper.wrapped_module, SAME_RANGE_AS_INPUT_MODULES)):
                    wrapper.use_input_grid(producer.output_scale, producer.output_zero_point)
                if index < len(wrapper.input_scales):  # a fake-quantized layer has them with quantize_inputs
                    wrapper.set_input_quant_params(index, producer.output_scale, producer.output_zero_point)
                    self.shared_inputs[(name, index)] = source
        missing = [f"'{n}' {what}" for n, m in modules.items() if isinstance(m, RangeLinearQuantWrapper)
                   for what in m.missing_static_params()]
        if missing:
            raise RuntimeError(f"quantization parameters could not be set for {', '.join(missing)}")

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`Quantizer.state_dict`, with the calibration statistics themselves (not a file path), so
        a quantized checkpoint is self-contained."""
        state = super().state_dict()
        if self.model_activation_stats is not None:
            state["args"]["model_activation_stats"] = copy.deepcopy(
                {name: {"inputs": {str(i): r for i, r in (e.get("inputs") or {}).items()}, "output": e.get("output")}
                 for name, e in self.model_activation_stats.items()})
        return state


#: Override settings have the types of the constructor arguments of the same names.
PostTrainLinearQuantizer.override_types = {
    **BITS_TYPES, **_OVERRIDE_ONLY_TYPES,
    **{key: hint for key, hint in typing.get_type_hints(PostTrainLinearQuantizer.__init__, include_extras=True).items()
       if key in _OVERRIDE_KEYS}}


def _same_activation_format(producer: Optional[nn.Module],
                            consumer: RangeLinearQuantWrapper) -> TypeGuard[RangeLinearQuantWrapper]:
    return (isinstance(producer, RangeLinearQuantWrapper) and producer.preset_act_stats and producer.has_output_stats
            and producer.num_bits_acts == consumer.num_bits_acts
            and producer.mode.activations == consumer.mode.activations)


_WRAPPER_TYPES = (RangeLinearQuantWrapper, RangeLinearEmbeddingWrapper, FP16Wrapper, FPWrapper, FP8LinearWrapper)
