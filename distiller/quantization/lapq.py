"""Loss-aware post-training quantization (LAPQ): searches quantization ranges that minimise the loss.

Nahshan et al., "Loss Aware Post-training Quantization", 2019 (arXiv:1911.07190): the network loss is
a non-separable function of the per-layer quantization steps, so instead of choosing each range
independently (min/max, ACIQ, L_p minimisation), LAPQ starts from a per-tensor L_p-optimal initial
guess and jointly optimises all of them on a small calibration set with Powell's derivative-free
coordinate search (optionally inside basin hopping).

Here every quantized activation tensor (each wrapper output, and each wrapper input that does not reuse
its producer's output parameters) contributes its range (``search_clipping=True``: its clipping min/max;
default: its scale and zero point) and every weight tensor one range multiplier, all expressed relative
to the initial guess so that the search starts at the vector of ones.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Optional, Union

import numpy as np
import scipy.optimize
import torch
from pydantic import PlainValidator
from torch import nn

from ..errors import ArgumentError
from ..spec import validated
from .q_utils import ClipMode, LinearQuantMode, parse_clip_mode
from .range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .range_linear.post_train import PostTrainLinearQuantizer
from .range_linear.wrappers import RangeLinearQuantWrapper, TensorStats, saturation_range_from_stats

__all__ = ["ptq_coordinate_search", "LAPQ_INIT_MODES", "lp_optimal_weight_multiplier"]

logger = logging.getLogger(__name__)

#: Initial range choices: the clip modes (from calibration statistics) or L_p error minimisation.
LAPQ_INIT_MODES = ("NONE", "AVG", "LAPLACE", "GAUSS", "L1", "L2", "L3")
#: The L_p init modes and their p.
_LP_INIT_MODES = {"L1": 1, "L2": 2, "L3": 3}
_BOUNDS = (0.02, 4.0)
#: scipy.optimize.minimize methods that take bounds.
_BOUNDED_METHODS = ("powell", "l-bfgs-b", "tnc", "slsqp", "nelder-mead", "trust-constr")


def _lapq_init_mode(value: Union[str, ClipMode]) -> str:
    """The name of an init mode (a clip mode or L1/L2/L3, any case)."""
    name = value.name if isinstance(value, ClipMode) else str(value).upper()
    if name not in LAPQ_INIT_MODES:
        raise ArgumentError(f"unknown LAPQ init_mode {value!r}; valid values: {', '.join(LAPQ_INIT_MODES)}")
    return name


#: ``init_mode`` of :func:`ptq_coordinate_search`: one of :data:`LAPQ_INIT_MODES` (any case) or a ClipMode.
LapqInitMode = Annotated[Union[str, ClipMode], PlainValidator(_lapq_init_mode)]


def lp_optimal_weight_multiplier(wrapper: RangeLinearQuantParamLayerWrapper, p: float,
                                 method: str = "Powell") -> float:
    """The range multiplier in (0, 1] minimising ``||W - Q(W)||_p`` for a layer's float weights."""
    def error(multiplier: Any) -> float:
        wrapper.requantize_weights(float(np.clip(np.asarray(multiplier).reshape(-1)[0], *_BOUNDS)))
        difference = wrapper.dequantized_weight() - wrapper.wrapped_module.get_buffer("float_weight")
        return difference.abs().pow(p).sum().item()
    if method.lower() == "bounded":
        found = scipy.optimize.minimize_scalar(error, bounds=(0.05, 1.0), method="bounded").x
    else:
        found = scipy.optimize.minimize(error, x0=np.array([1.0]), method=method, bounds=[(0.05, 1.0)]).x[0]
    return float(found)


class _SearchSpace:
    """Maps a vector of multipliers to the quantization parameters of the model's wrappers."""

    def __init__(self, quantizer: PostTrainLinearQuantizer, init_mode: str, init_method: str,
                 search_clipping: bool) -> None:
        self.quantizer, self.search_clipping = quantizer, search_clipping
        model = quantizer._model_key()
        self.modules = dict(model.named_modules())
        # (wrapper name, 'output' | input index | 'weight', initial (lo, hi) or multiplier)
        self.entries: list[tuple[str, Union[str, int], Any]] = []
        lp = _LP_INIT_MODES.get(init_mode)
        clip = ClipMode.LAPLACE if lp else parse_clip_mode(init_mode)
        if lp:
            logger.info("LAPQ: activations start from ACIQ Laplace ranges, weights from L%d-optimal ranges", lp)
        for name, wrapper in self.modules.items():
            if not isinstance(wrapper, RangeLinearQuantWrapper) or not wrapper.preset_act_stats:
                continue
            stats = quantizer.layer_activation_stats(name)
            assert stats is not None  # the wrapper has static ranges: it was built from these statistics
            if wrapper.has_output_stats and stats.get("output"):
                self.entries.append((name, "output", self._range(stats["output"], clip, wrapper)))
            for index in range(len(wrapper.input_scales)):
                if (name, index) not in quantizer.shared_inputs and index in stats["inputs"]:
                    self.entries.append((name, index, self._range(stats["inputs"][index], clip, wrapper)))
            if isinstance(wrapper, RangeLinearQuantParamLayerWrapper) and hasattr(wrapper.wrapped_module,
                                                                                   "float_weight"):
                self.entries.append((name, "weight", lp_optimal_weight_multiplier(wrapper, lp, init_method)
                                     if lp else 1.0))

    @staticmethod
    def _range(stats: TensorStats, clip: ClipMode, wrapper: RangeLinearQuantWrapper) -> tuple[float, float]:
        return saturation_range_from_stats(stats, clip, wrapper.acts_bits, 2.0, wrapper.clip_half_range)

    def _asymmetric(self, name: str) -> bool:
        return self.modules[name].mode.activations != LinearQuantMode.SYMMETRIC and \
            self.modules[name].mode.activations != LinearQuantMode.SYMMETRIC_RESTRICTED

    def initial_vector(self) -> np.ndarray:
        sizes = [1 if kind == "weight" or not self._asymmetric(name) else 2 for name, kind, _ in self.entries]
        return np.ones(sum(sizes))

    def _params(self, wrapper: RangeLinearQuantWrapper, initial: tuple[float, float],
                values: Sequence[float]) -> tuple[float, float]:
        lo, hi = initial
        if self.search_clipping or len(values) == 1:
            lo, hi = (lo * values[0], hi * values[-1]) if len(values) == 2 else (lo * values[0], hi * values[0])
            return wrapper.quant_params_for_range(lo, hi)
        scale, zero_point = wrapper.quant_params_for_range(lo, hi)  # scale multiplier, zero-point shift
        levels = 2 ** wrapper.acts_bits - 1
        offset = 0 if wrapper.mode.activations == LinearQuantMode.ASYMMETRIC_UNSIGNED else (levels + 1) // 2
        zero_point = min(max(round(zero_point + (values[1] - 1.0) * 10.0), offset - levels), offset)
        return scale / values[0], float(zero_point)

    def apply(self, vector: Any) -> None:
        vector = np.clip(np.asarray(vector, dtype=np.float64), *_BOUNDS)
        position = 0
        for name, kind, initial in self.entries:
            wrapper = self.modules[name]
            if kind == "weight":
                wrapper.requantize_weights(initial * vector[position])
                position += 1
                continue
            size = 2 if self._asymmetric(name) else 1
            params = self._params(wrapper, initial, vector[position:position + size])
            position += size
            if kind == "output":
                wrapper.set_output_quant_params(*params)
            else:
                wrapper.set_input_quant_params(kind, *params)
        self.quantizer.share_producer_quant_params()

    def describe(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for name, kind, _ in self.entries:
            wrapper = self.modules[name]
            if kind == "weight":
                result.setdefault(name, {})["w_scale"] = wrapper.w_scale.detach().cpu().reshape(-1).tolist()
            elif kind == "output":
                result.setdefault(name, {})["output"] = [wrapper.output_scale.item(), wrapper.output_zero_point.item()]
            else:
                result.setdefault(name, {})[f"input_{kind}"] = [wrapper.input_scales[kind].item(),
                                                                 wrapper.input_zero_points[kind].item()]
        return result


@validated
def ptq_coordinate_search(quantizer: PostTrainLinearQuantizer, dummy_input: Any,
                          eval_fn: Callable[[nn.Module], float], test_fn: Optional[Callable[[nn.Module], Any]] = None,
                          method: Union[str, Callable[..., Any]] = "Powell", maxiter: Optional[int] = None,
                          maxfev: Optional[int] = None, basinhopping: bool = False, basinhopping_niter: int = 100,
                          init_mode: LapqInitMode = "NONE", init_method: str = "Powell",
                          search_clipping: bool = False, minimizer_kwargs: Optional[Mapping[str, Any]] = None,
                          ) -> tuple[nn.Module, dict[str, dict[str, Any]]]:
    """Optimises the quantization ranges of a post-training quantizer for the loss (LAPQ).

    Args:
        quantizer: a :class:`PostTrainLinearQuantizer` with calibration statistics, prepared or not (it is
            prepared with ``dummy_input`` if needed). Weights are searched only when it keeps float weights
            (``save_fp_weights=True``, as ``--qe-lapq`` sets).
        dummy_input: an example input for ``prepare_model``.
        eval_fn: ``fn(model) -> float`` loss on the calibration set (lower is better).
        test_fn: optional ``fn(model)`` logged before and after the search (e.g. top-1 on a test subset).
        method: ``scipy.optimize.minimize`` method: a name (Powell is the paper's) or a callable custom
            minimizer as scipy accepts it.
        maxiter, maxfev: iteration / function-evaluation limits passed to the method.
        basinhopping: wrap the search in ``scipy.optimize.basinhopping`` (``basinhopping_niter`` hops).
        init_mode: initial ranges: a clip mode from the statistics (NONE, AVG, LAPLACE, GAUSS) or L1/L2/L3
            (L_p-optimal weight ranges; activations then start from Laplace ranges).
        init_method: scipy method for the L_p initialisation ('Powell', or 'bounded' for a scalar search).
        search_clipping: search clipping ranges (min/max) instead of scale and zero point.
        minimizer_kwargs: extra keyword arguments of ``scipy.optimize.minimize``.
    Returns:
        ``(model, best_params)``: the quantized model with the best ranges found (never worse than the
        initial ones on ``eval_fn``) and a ``{layer: {'output': [scale, zero_point], ...}}`` summary.
    Raises:
        distiller.errors.ArgumentError: an argument of the wrong type (e.g. not a PostTrainLinearQuantizer, an
            unknown ``init_mode``: checked by :func:`distiller.spec.validated`), a quantizer without
            calibration statistics.
    """
    if quantizer.model_activation_stats is None:
        raise ArgumentError("LAPQ needs a PostTrainLinearQuantizer built with calibration statistics "
                            "(model_activation_stats)", argument="quantizer")
    mode_name = _lapq_init_mode(init_mode)
    if not quantizer.prepared:
        quantizer.prepare_model(dummy_input)
    model = quantizer._model_key()
    space = _SearchSpace(quantizer, mode_name, init_method, search_clipping)
    x0 = space.initial_vector()
    evaluations = []

    def objective(vector: Any) -> float:
        space.apply(vector)
        with torch.no_grad():
            loss = float(eval_fn(model))
        evaluations.append(loss)
        return loss

    initial_loss = objective(x0)
    if test_fn is not None:
        logger.info("LAPQ initial (%s ranges): loss %.5f, test %s", mode_name, initial_loss, test_fn(model))
    options = {k: v for k, v in (("maxiter", maxiter), ("maxfev", maxfev)) if v is not None}
    kwargs = dict(method=method, options=options, **(minimizer_kwargs or {}))
    if isinstance(method, str) and method.lower() in _BOUNDED_METHODS:
        kwargs.setdefault("bounds", [_BOUNDS] * len(x0))
    if basinhopping:
        result = scipy.optimize.basinhopping(objective, x0, niter=basinhopping_niter, minimizer_kwargs=kwargs)
    else:
        result = scipy.optimize.minimize(objective, x0, **kwargs)
    best_vector, best_loss = (result.x, float(result.fun)) if float(result.fun) <= initial_loss else (x0, initial_loss)
    space.apply(best_vector)
    logger.info("LAPQ (%s initial ranges): loss %.5f -> %.5f after %d evaluations", mode_name, initial_loss, best_loss,
                len(evaluations))
    if test_fn is not None:
        logger.info("LAPQ final: test %s", test_fn(model))
    return model, space.describe()
