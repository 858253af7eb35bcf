"""Post-training quantization of recurrent models: DistillerLSTM gates and embeddings are quantized, PyTorch's
fused recurrent layers are refused with the fix named (or kept float when asked)."""
import pytest
import torch
from torch import nn

from distiller.data_loggers import collect_quant_stats
from distiller.errors import ArgumentError
from distiller.modules import DistillerLSTM
from distiller.quantization import PostTrainLinearQuantizer
from distiller.quantization.range_linear.param_wrappers import RangeLinearEmbeddingWrapper
from distiller.quantization.range_linear.wrappers import RangeLinearQuantWrapper


class TinyLM(nn.Module):
    """Embedding -> recurrent layer -> linear decoder over a 20-word vocabulary."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.encoder = nn.Embedding(20, 8)
        self.rnn = rnn
        self.decoder = nn.Linear(8, 20)

    def forward(self, tokens):
        output = self.rnn(self.encoder(tokens))
        return self.decoder(output[0] if isinstance(output, tuple) else output)


@pytest.fixture
def tokens():
    return torch.randint(0, 20, (6, 3), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("rnn, fix", [(nn.LSTM(8, 8), "convert_model_to_distiller_lstm"),
                                      (nn.GRU(8, 8), r"\{'rnn': \{bits_activations: null\}\}")])
def test_fused_recurrent_layer_is_refused_with_the_fix(rnn, fix, tokens):
    quantizer = PostTrainLinearQuantizer(TinyLM(rnn).eval())
    with pytest.raises(ArgumentError, match=rf"'rnn' \({type(rnn).__name__}\) is a fused recurrent kernel.*{fix}"):
        quantizer.prepare_model(tokens)


def test_fake_true_on_a_fused_recurrent_layer_is_refused(tokens):
    quantizer = PostTrainLinearQuantizer(TinyLM(nn.LSTM(8, 8)).eval(), overrides={"rnn": {"fake": True}})
    with pytest.raises(ArgumentError, match=r"fake: 'rnn' \(LSTM\) is a fused recurrent kernel"):
        quantizer.check_settings()


@pytest.mark.parametrize("keep", [{"bits_activations": None}, {"fake": False}])
def test_fused_recurrent_layer_kept_float_when_asked(keep, tokens):
    model = TinyLM(nn.LSTM(8, 8)).eval()
    expected = model(tokens)
    PostTrainLinearQuantizer(model, overrides={"rnn": keep}).prepare_model(tokens)
    assert isinstance(model.rnn, nn.LSTM)
    assert isinstance(model.decoder, RangeLinearQuantWrapper)
    torch.testing.assert_close(model(tokens), expected, atol=0.05, rtol=0.0)


@pytest.mark.parametrize("calibrate", [False, True])
def test_distiller_lstm_gates_and_embedding_are_quantized_and_stay_close(calibrate, tokens):
    torch.manual_seed(0)
    model = TinyLM(DistillerLSTM(8, 8, num_layers=2, dropout=0.0)).eval()
    expected = model(tokens)
    stats = collect_quant_stats(model, lambda m: m(tokens)) if calibrate else None
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode="asym_u").prepare_model(tokens)
    cell = model.rnn.cells[1]
    assert isinstance(model.encoder, RangeLinearEmbeddingWrapper)
    for gate in (cell.fc_gate_x, cell.fc_gate_h, cell.eltwiseadd_gate, cell.act_i, cell.eltwisemult_hidden):
        assert isinstance(gate, RangeLinearQuantWrapper)
    output = model(tokens)
    assert not torch.equal(output, expected)  # it is quantized ...
    torch.testing.assert_close(output, expected, atol=0.02, rtol=0.0)  # ... and close to the float model


def test_untraceable_model_without_batchnorm_quantizes_without_folding_warning(tokens, caplog):
    model = TinyLM(DistillerLSTM(8, 8, dropout=0.0)).eval()  # torch.fx cannot trace the time loop
    with caplog.at_level("WARNING"):
        PostTrainLinearQuantizer(model).prepare_model(tokens)
    assert isinstance(model.decoder, RangeLinearQuantWrapper)
    assert "BatchNorm" not in caplog.text
