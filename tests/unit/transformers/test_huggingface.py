"""Hugging Face BERT models: head/FFN ranking, YAML pruners, thinning, PTQ and KD (skipped without transformers)."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

import distiller  # noqa: E402
from distiller.errors import ArgumentError, UnmatchedNameError  # noqa: E402
from distiller.quantization import PostTrainLinearQuantizer  # noqa: E402
from distiller.thinning import ThinningError  # noqa: E402
from distiller.transformers import (ATTENTION_HEADS, FFN_NEURONS, prune_attention_heads,  # noqa: E402
                                    prune_ffn_neurons, thin_transformer)
from distiller.transformers.huggingface import BertAttentionHeads  # noqa: E402

HEADS = r"bert\.encoder\.layer\.\d+\.attention"
LAYERS = r"bert\.encoder\.layer\.\d+"


def _bert(seed: int = 0, heads: int = 4) -> "transformers.BertForSequenceClassification":
    """hidden 32, 2 layers, ``heads`` heads, FFN 64, 3 classes, random weights, eval mode, eager attention."""
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=heads,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=3,
                                     attn_implementation="eager")
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config).eval()


@pytest.fixture
def ids():
    return torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(1))


def test_head_importance_is_the_l1_norm_of_its_qkv_rows_and_output_columns():
    attention = _bert().bert.encoder.layer[0].attention
    scores = ATTENTION_HEADS.importance(attention)
    rows = slice(8, 16)                                          # head 1 of 4, 8 wide
    expected = sum(p.weight[rows].abs().sum() + p.bias[rows].abs().sum()
                   for p in (attention.self.query, attention.self.key, attention.self.value))
    expected = expected + attention.output.dense.weight[:, rows].abs().sum()
    assert scores.shape == (4,)
    torch.testing.assert_close(scores[1], expected.detach().double())


def test_ffn_importance_and_zero_neurons_read_intermediate_and_output_dense():
    layer = _bert().bert.encoder.layer[1]
    with torch.no_grad():
        layer.output.dense.weight[:, 7] = 0
    expected = (layer.intermediate.dense.weight[7].abs().sum() + layer.intermediate.dense.bias[7].abs()).double()
    torch.testing.assert_close(FFN_NEURONS.importance(layer)[7], expected.detach())
    assert FFN_NEURONS.zero_units(layer).nonzero().flatten().tolist() == [7]
    masks = FFN_NEURONS.masks(layer, torch.arange(64) != 3)
    assert set(masks) == {"intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight"}
    assert masks["output.dense.weight"][:, 3].eq(0).all() and masks["output.dense.weight"].sum() == 32 * 63


SCHEDULE = {
    "version": 1,
    "pruners": {
        "heads": {"class": "AttentionHeadPruner_AGP", "initial_sparsity": 0.0, "final_sparsity": 0.5,
                  "modules": [HEADS]},
        "neurons": {"class": "FFNNeuronPruner", "desired_sparsity": 0.25, "modules": [LAYERS]},
    },
    "policies": [{"pruner": {"instance_name": "heads"}, "starting_epoch": 0, "ending_epoch": 2, "frequency": 1},
                 {"pruner": {"instance_name": "neurons"}, "epochs": [1]}],
}


def test_yaml_pruners_then_thinning_keep_the_masked_outputs(ids):
    model = _bert().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, SCHEDULE)
    labels = torch.tensor([0, 1, 2, 0])
    for epoch in range(2):
        scheduler.on_epoch_begin(epoch, optimizer)
        scheduler.on_minibatch_begin(epoch, 0, 1, optimizer)
        loss = torch.nn.functional.cross_entropy(model(ids).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.on_minibatch_end(epoch, 0, 1, optimizer)
        scheduler.on_epoch_end(epoch, optimizer)
    model.eval()
    with torch.no_grad():
        masked = model(ids).logits
    removed = thin_transformer(model, optimizer, scheduler.zeros_mask_dict)
    assert {name: len(h) for name, h in removed["heads"].items()} == \
        {f"bert.encoder.layer.{i}.attention": 2 for i in range(2)}
    assert {name: len(n) for name, n in removed["neurons"].items()} == {f"bert.encoder.layer.{i}": 16 for i in range(2)}
    attention = model.bert.encoder.layer[0].attention
    assert (attention.self.num_attention_heads, attention.self.all_head_size) == (2, 16)
    assert attention.self.key.weight.shape == (16, 32) and attention.output.dense.weight.shape == (32, 16)
    assert model.bert.encoder.layer[1].intermediate.dense.out_features == 48
    assert scheduler.zeros_mask_dict["bert.encoder.layer.0.attention.self.value.weight"].mask.shape == (16, 32)
    assert optimizer.state[attention.self.query.weight]["momentum_buffer"].shape == (16, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, masked)


def test_explicit_removal_equals_zeroing_the_output_columns_with_sdpa_attention(ids):
    model = _bert()
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.output.dense.weight[:, 24:32] = 0     # head 3
        model.bert.encoder.layer[1].output.dense.weight[:, [2, 9]] = 0
        expected = model(ids).logits
    prune_attention_heads(model, {"bert.encoder.layer.0.attention": [3]})
    prune_ffn_neurons(model, {"bert.encoder.layer.1": [2, 9]})
    assert model.bert.encoder.layer[0].attention.self.num_attention_heads == 3
    assert model.bert.encoder.layer[1].output.dense.in_features == 62
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected)


def test_bad_requests_are_user_errors_before_any_change():
    model = _bert()
    with pytest.raises(ArgumentError, match=r"has 4 attention heads; indices \[4\] are out of range"):
        prune_attention_heads(model, {"bert.encoder.layer.0.attention": [4]})
    with pytest.raises(ThinningError, match="removing all 4 attention heads"):
        prune_attention_heads(model, {"bert.encoder.layer.0.attention": [0, 1, 2, 3]})
    with pytest.raises(ArgumentError, match="is a BertSelfAttention; attention heads live in .*BertAttention"):
        prune_attention_heads(model, {"bert.encoder.layer.0.attention.self": [0]})
    with pytest.raises(UnmatchedNameError, match="did you mean 'bert.encoder.layer.0.attention'"):
        prune_attention_heads(model, {"bert.encoder.layer.0.atention": [0]})
    with pytest.raises(ArgumentError, match="holds no FFN neurons"):
        FFN_NEURONS.count(model.bert.encoder.layer[0].attention)
    assert model.bert.encoder.layer[0].attention.self.num_attention_heads == 4
    schedule = {"version": 1, "pruners": {"f": {"class": "FFNNeuronPruner", "desired_sparsity": 0.5,
                                                "modules": ["bert.encoder.layer.0.intermediate"]}},
                "policies": [{"pruner": {"instance_name": "f"}, "epochs": [0]}]}
    with pytest.raises(distiller.ScheduleError, match="pruners.f.*'bert.encoder.layer.0.intermediate' is a "
                                                      "BertIntermediate"):
        distiller.config.dict_config(model, None, schedule)


def test_a_layout_that_is_not_whole_heads_is_refused():
    attention = _bert().bert.encoder.layer[0].attention
    attention.self.key = torch.nn.Linear(32, 28)
    with pytest.raises(ArgumentError, match=r"query/key/value widths \[32, 28, 32\]"):
        BertAttentionHeads().slices(attention)


def test_ptq_quantizes_every_bert_linear_and_stays_close(ids):
    model = _bert()
    prune_attention_heads(model, {"bert.encoder.layer.1.attention": [0]})   # a thinned model quantizes as well
    with torch.no_grad():
        expected = model(ids).logits
    PostTrainLinearQuantizer(model).prepare_model(ids[:1])
    wrapped = {name for name, module in model.named_modules() if hasattr(module, "wrapped_module")}
    for layer in ("bert.encoder.layer.0", "bert.encoder.layer.1"):
        assert {f"{layer}.attention.self.{p}" for p in ("query", "key", "value")} <= wrapped
        assert {f"{layer}.attention.output.dense", f"{layer}.intermediate.dense", f"{layer}.output.dense"} <= wrapped
    with torch.no_grad():
        actual = model(ids).logits
    assert not torch.equal(actual, expected)
    assert (actual - expected).abs().max() < 0.05 * expected.abs().max()


def test_a_head_pruned_bert_student_learns_from_its_dense_teacher(ids):
    teacher, student = _bert(0), _bert(3)
    prune_attention_heads(student, {f"bert.encoder.layer.{i}.attention": [0, 1] for i in range(2)})
    kd = distiller.KnowledgeDistillationPolicy(student, teacher, temperature=2.0,
                                               loss_weights={"distill": 0.7, "student": 0.3, "teacher": 0.0})
    scheduler = distiller.CompressionScheduler(student)
    scheduler.add_policy(kd, epochs=[0])
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    student.train()
    scheduler.on_epoch_begin(0, optimizer)
    loss = torch.nn.functional.cross_entropy(student(ids).logits, torch.tensor([0, 1, 2, 0]))
    total = scheduler.before_backward_pass(0, 0, 1, loss, optimizer, return_loss_components=True)
    assert [c.name for c in total.loss_components] == ["Student Loss", "Distillation Loss"]
    assert float(total.loss_components[1].value.detach()) > 0
    total.overall_loss.backward()
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
