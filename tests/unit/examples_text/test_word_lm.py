"""examples/word_language_model: the LSTM language model, its loss and PTQ of its gates and embedding."""
import pytest
import torch

from distiller.data_loggers import collect_quant_stats
from distiller.errors import ArgumentError
from distiller.quantization import PostTrainLinearQuantizer
from distiller.quantization.range_linear.param_wrappers import RangeLinearEmbeddingWrapper
from distiller.quantization.range_linear.wrappers import RangeLinearQuantWrapper

from .conftest import load_example


@pytest.fixture(scope="module")
def lm_model():
    return load_example("word_language_model", "lm_model")


def _model(lm_model, tied=False):
    torch.manual_seed(0)
    return lm_model.RNNModel(30, 12, 12, 2, dropout=0.0, tie_weights=tied).eval()


def test_forward_shapes_and_state(lm_model):
    model = _model(lm_model)
    tokens = torch.randint(0, 30, (5, 3))
    logits, (h, c) = model(tokens)
    assert logits.shape == (5, 3, 30) and h.shape == c.shape == (2, 3, 12)
    # carrying the state over equals running the whole sequence at once
    first, state = model(tokens[:2])
    second, _ = model(tokens[2:], state)
    torch.testing.assert_close(torch.cat([first, second]), logits)


def test_tied_weights_share_one_parameter(lm_model):
    model = _model(lm_model, tied=True)
    assert model.decoder.weight is model.encoder.weight
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in _model(lm_model).parameters())
    with pytest.raises(ArgumentError, match=r"--tied needs the embedding size \(12\) to equal the hidden size \(8\)"):
        lm_model.RNNModel(30, 12, 8, 1, tie_weights=True)


def test_stateful_loss_and_evaluate_agree(lm_app, lm_model):
    model = _model(lm_model)
    data = torch.randint(0, 30, (9, 2))
    batches = [(data[:4], data[1:5]), (data[4:8], data[5:9])]
    loss_of = lm_app.StatefulLoss()
    losses = [loss_of(model, batch).item() for batch in batches]
    result = lm_app.evaluate(model, batches)
    assert result["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert result["ppl"] == pytest.approx(torch.tensor(result["loss"]).exp().item(), rel=1e-5)


@pytest.mark.parametrize("tied", [False, True])
def test_ptq_quantizes_embedding_and_gates_and_keeps_outputs_close(lm_model, tied):
    model = _model(lm_model, tied)
    tokens = torch.randint(0, 30, (6, 4), generator=torch.Generator().manual_seed(1))
    expected = model(tokens)[0]
    stats = collect_quant_stats(model, lambda m: m(tokens))
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode="asym_u",
                             per_channel_wts=True).prepare_model(tokens)
    assert isinstance(model.encoder, RangeLinearEmbeddingWrapper)
    assert isinstance(model.rnn.cells[0].fc_gate_h, RangeLinearQuantWrapper)
    assert isinstance(model.decoder, RangeLinearQuantWrapper)
    output = model(tokens)[0]
    assert not torch.equal(output, expected)
    torch.testing.assert_close(output, expected, atol=0.03, rtol=0.0)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")  # no optimizer steps here
@pytest.mark.parametrize("schedule", ["lm.schedule_dense.yaml", "lm.schedule_agp.yaml", "lm.schedule_baidu_rnn.yaml",
                                      "lm.schedule_agp_finetune.yaml", "lm.schedule_dense_finetune.yaml"])
def test_example_schedules_load_and_prune_what_they_name(lm_model, schedule):
    import os

    import distiller

    from .conftest import EXAMPLES
    model = _model(lm_model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = distiller.file_config(model, optimizer, os.path.join(EXAMPLES, "word_language_model", schedule))
    for epoch in range(10):  # every policy runs: the pruners' weights match, the epochs fit the schedule
        scheduler.on_epoch_begin(epoch, optimizer)
        scheduler.on_epoch_end(epoch, optimizer)
    masked = {name for name, masker in scheduler.zeros_mask_dict.items() if masker.mask is not None}
    if "dense" in schedule:
        assert not masked
    else:
        assert {"encoder.weight", "rnn.cells.1.fc_gate_h.weight"} <= masked
