"""LAPQ: the search lowers the loss, starts where its init mode says, and falls back to its start when it
ends worse."""
import copy

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F
from torch import nn

from distiller.quantization import PostTrainLinearQuantizer, Quantizer, ptq_coordinate_search
from distiller.errors import ArgumentError
from distiller.quantization import ClipMode
from distiller.quantization.lapq import LAPQ_INIT_MODES, lp_optimal_weight_multiplier
from distiller.quantization.range_linear.wrappers import saturation_range_from_stats


@pytest.fixture
def loss_fn(float_model, calib_batches):
    x = torch.cat(calib_batches)
    with torch.no_grad():
        targets = float_model(x).argmax(1)  # agreement with the float model is the goal
    return lambda model: F.cross_entropy(model(x), targets).item()


def test_lapq_improves_a_badly_initialized_quantizer(float_model, stats, loss_fn):
    # 4-bit activations with N_STD clipping at 0.3 standard deviations: far too narrow ranges
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), bits_activations=4, model_activation_stats=stats,
                                         mode="asym_u", clip_acts="N_STD", clip_n_stds=0.3, save_fp_weights=True)
    quantizer.prepare_model()
    initial = loss_fn(quantizer.model)
    model, best = ptq_coordinate_search(quantizer, None, loss_fn, maxfev=60, init_mode="AVG",
                                        search_clipping=True)
    assert loss_fn(model) < initial
    assert "conv1" in best and "output" in best["conv1"] and "w_scale" in best["conv1"]


def test_lapq_lowers_the_loss_of_min_max_ranges(float_model, stats, loss_fn):
    # 3-bit activations on their full min/max ranges: clipping them is known to lower the error (ACIQ), so a
    # search that works finds a strictly better point within a few dozen evaluations.
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), bits_activations=3, model_activation_stats=stats,
                                         mode="sym")
    quantizer.prepare_model()
    start = loss_fn(quantizer.model)
    model, _ = ptq_coordinate_search(quantizer, None, loss_fn, maxfev=30)
    assert loss_fn(model) < start - 1e-3


def test_lapq_keeps_the_initial_ranges_when_the_search_ends_worse(float_model, stats, loss_fn):
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), bits_activations=4, model_activation_stats=stats,
                                         mode="asym_u")
    quantizer.prepare_model()
    start, initial_buffers = loss_fn(quantizer.model), _quant_buffers(quantizer.model)

    def worse_minimizer(fun, x0, args=(), **kwargs):  # a minimizer that ends at a far worse point
        x = np.full_like(x0, 0.05)
        return scipy.optimize.OptimizeResult(x=x, fun=fun(x), success=True, nfev=1)

    model, _ = ptq_coordinate_search(quantizer, None, loss_fn, method=worse_minimizer)
    assert loss_fn(model) == start
    final_buffers = _quant_buffers(model)
    assert final_buffers.keys() == initial_buffers.keys()
    assert all(torch.equal(final_buffers[k], initial_buffers[k]) for k in initial_buffers)


def _quant_buffers(model):
    return {name: buffer.clone() for name, buffer in model.named_buffers() if "scale" in name or "zero_point" in name}


@pytest.mark.parametrize("init_mode", LAPQ_INIT_MODES)
def test_every_init_mode_starts_the_search_from_its_own_ranges(float_model, stats, init_mode):
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), bits_activations=4, bits_parameters=4,
                                         model_activation_stats=stats, mode="asym_u", save_fp_weights=True)
    quantizer.prepare_model()
    conv = quantizer.model.conv1
    full_range_w_scale = conv.w_scale.clone()
    first = {}

    def loss(model):  # records the ranges of the first evaluation: the initial point of the search
        if not first:
            first.update(output=(conv.output_scale.item(), conv.output_zero_point.item()), w_scale=conv.w_scale.clone())
        return 0.0

    ptq_coordinate_search(quantizer, None, loss, maxfev=1, init_mode=init_mode)
    lp = init_mode in ("L1", "L2", "L3")
    clip = ClipMode.LAPLACE if lp else ClipMode[init_mode]
    lo, hi = saturation_range_from_stats(quantizer.layer_activation_stats("conv1")["output"], clip, 4, 2.0)
    assert first["output"] == pytest.approx(conv.quant_params_for_range(lo, hi))
    if lp:  # L_p-optimal weight ranges are narrower than min/max at 4 bits: larger scales
        assert (first["w_scale"] > full_range_w_scale).all()
    else:
        assert torch.equal(first["w_scale"], full_range_w_scale)


def test_init_modes_give_different_starting_ranges(stats):
    outputs = {mode: saturation_range_from_stats(stats["conv1"]["output"], ClipMode[mode], 4)
               for mode in ("NONE", "AVG", "LAPLACE", "GAUSS")}
    assert len(set(outputs.values())) == 4


def test_l2_initialisation_clips_weights_no_wider_than_their_range(float_model, stats):
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), bits_parameters=4, model_activation_stats=stats,
                                         save_fp_weights=True)
    quantizer.prepare_model()
    wrapper = quantizer.model.block.conv1
    full_range_error = (wrapper.dequantized_weight() - wrapper.wrapped_module.float_weight).pow(2).sum()
    multiplier = lp_optimal_weight_multiplier(wrapper, 2, "bounded")
    wrapper.requantize_weights(multiplier)
    assert 0.05 <= multiplier <= 1.0
    assert (wrapper.dequantized_weight() - wrapper.wrapped_module.float_weight).pow(2).sum() <= full_range_error


def test_lapq_bad_input(float_model, stats):
    with pytest.raises(ArgumentError, match="calibration statistics"):
        ptq_coordinate_search(PostTrainLinearQuantizer(copy.deepcopy(float_model)), None, lambda m: 0.0)
    with pytest.raises(ArgumentError, match="argument 'quantizer' expects a PostTrainLinearQuantizer, got Quantizer"):
        ptq_coordinate_search(Quantizer(nn.Linear(2, 2)), None, lambda m: 0.0)
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats)
    with pytest.raises(ArgumentError, match="argument 'init_mode' .* got 'L4' .*unknown LAPQ init_mode 'L4'; valid"):
        ptq_coordinate_search(quantizer, None, lambda m: 0.0, init_mode="L4")
