"""Whether a quantizer maps a (pruned) weight of 0.0 to exactly 0, as its ``keeps_zero_weights`` declares: the
fused-schedule check relies on the declaration, so every trainable registered quantizer is held to it."""
import pytest
import torch

from distiller.quantization import LinearQuantMode, QuantAwareTrainRangeLinearQuantizer
from distiller.registry import QUANTIZERS
from distiller.testing import TinyCNN

TRAINABLE = [name for name in QUANTIZERS.names() if QUANTIZERS.entry(name).trains]


def _quantized_with_zeros(cls, **kwargs):
    """TinyCNN quantized by ``cls`` after zeroing 3 of conv2's filters and a third of its other weights."""
    torch.manual_seed(0)
    model = TinyCNN()
    quantizer = cls(model, None, bits_activations=8, **kwargs)
    quantizer.prepare_model()
    weight = model.conv2.float_weight
    pruned = torch.zeros_like(weight, dtype=torch.bool)
    pruned[:3] = True
    pruned |= torch.rand(weight.shape) < 0.33
    with torch.no_grad():
        weight[pruned] = 0.0
    quantizer.quantize_params()
    return model.conv2.weight, pruned


def test_every_trainable_quantizer_is_checked():
    assert {"QuantAwareTrainRangeLinearQuantizer", "DorefaQuantizer", "PACTQuantizer", "WRPNQuantizer"} <= \
        set(TRAINABLE)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("name", TRAINABLE)
def test_keeps_zero_weights_is_what_the_quantizer_does(name, bits):
    cls = QUANTIZERS.get(name)
    quantized, pruned = _quantized_with_zeros(cls, bits_weights=bits)
    assert bool(torch.all(quantized[pruned] == 0)) is cls.keeps_zero_weights
    if not cls.keeps_zero_weights:
        assert torch.all(quantized[pruned] != 0)  # no level at 0: every pruned weight comes back non-zero


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("mode", list(LinearQuantMode))
def test_range_linear_maps_zero_to_zero_in_every_mode(mode, per_channel):
    """Asymmetric modes too: the zero point is an integer, so 0.0 is a level of every range (whole pruned
    filters included, whose range is [0, 0])."""
    quantized, pruned = _quantized_with_zeros(QuantAwareTrainRangeLinearQuantizer, bits_weights=4, mode=mode,
                                              per_channel_wts=per_channel)
    assert torch.all(quantized[pruned] == 0) and torch.count_nonzero(quantized[~pruned]) > 0
    levels = [row.unique().numel() for row in quantized] if per_channel else [quantized.unique().numel()]
    assert max(levels) <= 16
