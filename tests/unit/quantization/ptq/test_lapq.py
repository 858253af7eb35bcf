"""LAPQ: the loss-aware search never ends worse than its start and fixes a deliberately bad one."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.quantization import PostTrainLinearQuantizer, Quantizer, ptq_coordinate_search
from distiller.quantization.lapq import lp_optimal_weight_multiplier


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


def test_lapq_never_worsens_the_initial_loss(float_model, stats, loss_fn):
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats, mode="sym")
    quantizer.prepare_model()
    start = loss_fn(quantizer.model)
    model, _ = ptq_coordinate_search(quantizer, None, loss_fn, maxfev=5)
    assert loss_fn(model) <= start + 1e-6


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
    with pytest.raises(ValueError, match="calibration statistics"):
        ptq_coordinate_search(PostTrainLinearQuantizer(copy.deepcopy(float_model)), None, lambda m: 0.0)
    with pytest.raises(ValueError, match="PostTrainLinearQuantizer"):
        ptq_coordinate_search(Quantizer(nn.Linear(2, 2)), None, lambda m: 0.0)
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats)
    with pytest.raises(ValueError, match="init_mode 'L4'"):
        ptq_coordinate_search(quantizer, None, lambda m: 0.0, init_mode="L4")
