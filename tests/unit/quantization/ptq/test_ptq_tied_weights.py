"""Post-training quantization of layers that share a weight (tied embedding and decoder)."""
import pytest
import torch
from torch import nn

from distiller.quantization import PostTrainLinearQuantizer
from distiller.quantization.range_linear.tied_weights import untie_shared_weights
from distiller.quantization.range_linear.wrappers import RangeLinearQuantWrapper


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(16, 8)
        self.hidden = nn.Linear(8, 8)
        self.decoder = nn.Linear(8, 16)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens):
        return self.decoder(torch.tanh(self.hidden(self.encoder(tokens))))


@pytest.fixture
def tokens():
    return torch.randint(0, 16, (12,), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("overrides", [None, {"decoder": {"bits_weights": None, "bits_activations": None}}])
def test_tied_weight_is_quantized_once_per_layer(tokens, overrides):
    torch.manual_seed(0)
    model = TiedLM().eval()
    table = model.encoder.weight.detach().clone()
    expected = model(tokens)
    PostTrainLinearQuantizer(model, mode="asym_u", overrides=overrides).prepare_model(tokens)
    decoder = model.decoder.wrapped_module if isinstance(model.decoder, RangeLinearQuantWrapper) else model.decoder
    assert decoder.weight is not model.encoder.wrapped_module.weight
    if overrides:  # the float decoder keeps the float table, not the embedding's integers
        assert torch.equal(decoder.weight, table)
    torch.testing.assert_close(model(tokens), expected, atol=0.03 * float(expected.abs().max()), rtol=0.0)


def test_untie_only_where_a_sharing_layer_is_quantized():
    model = TiedLM()
    assert untie_shared_weights(model, ["hidden"]) == []
    assert model.decoder.weight is model.encoder.weight
    assert untie_shared_weights(model, ["encoder"]) == [("decoder", "encoder")]
    assert model.decoder.weight is not model.encoder.weight
    assert torch.equal(model.decoder.weight, model.encoder.weight)
