"""Removing pruned heads and FFN neurons: the thinned model computes what the masked one did."""
import pytest
import torch

import distiller
from distiller.errors import ArgumentError, UnmatchedNameError
from distiller.testing import TinyTransformer, train_with_scheduler
from distiller.thinning import ThinningError
from distiller.transformers import prune_attention_heads, prune_ffn_neurons, thin_transformer

SCHEDULE = {
    "version": 1,
    "pruners": {
        "heads": {"class": "AttentionHeadPruner_AGP", "initial_sparsity": 0.0, "final_sparsity": 0.5,
                  "modules": [r"encoder\.layers\.\d+\.self_attn"]},
        "neurons": {"class": "FFNNeuronPruner", "desired_sparsity": 0.25, "modules": [r"encoder\.layers\.1"]},
    },
    "policies": [{"pruner": {"instance_name": "heads"}, "starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
                 {"pruner": {"instance_name": "neurons"}, "epochs": [1]}],
}


def test_scheduled_head_and_neuron_pruning_then_thinning_keeps_the_outputs(tiny_transformer, batches, images):
    optimizer = torch.optim.SGD(tiny_transformer.parameters(), lr=0.05, momentum=0.9)
    scheduler = distiller.config.dict_config(tiny_transformer, optimizer, SCHEDULE)
    train_with_scheduler(tiny_transformer, optimizer, scheduler, batches, epochs=3)
    model = tiny_transformer.eval()
    with torch.no_grad():
        masked = model(images)
    removed = thin_transformer(model, optimizer, scheduler.zeros_mask_dict)
    assert {name: len(heads) for name, heads in removed["heads"].items()} == \
        {"encoder.layers.0.self_attn": 2, "encoder.layers.1.self_attn": 2}
    assert removed["neurons"] == {"encoder.layers.1": removed["neurons"]["encoder.layers.1"]}
    assert len(removed["neurons"]["encoder.layers.1"]) == 4
    attention = model.encoder.layers[0].self_attn
    assert (attention.num_heads, attention.in_proj.weight.shape, attention.out_proj.weight.shape) == \
        (2, (12, 8), (8, 4))
    assert model.encoder.layers[1].linear1.out_features == 12 and model.encoder.layers[0].linear1.out_features == 16
    assert scheduler.zeros_mask_dict["encoder.layers.0.self_attn.in_proj.weight"].mask.shape == (12, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(images), masked)
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1, start_epoch=3)  # keeps training


def test_explicit_removal_equals_zeroing_the_output_columns(tiny_transformer, images):
    model = tiny_transformer.eval()
    with torch.no_grad():
        model.encoder.layers[0].self_attn.out_proj.weight[:, [0, 1, 6, 7]] = 0   # heads 0 and 3
        model.encoder.layers[1].linear2.weight[:, [2, 9]] = 0
        expected = model(images)
    prune_attention_heads(model, {"encoder.layers.0.self_attn": [0, 3]})
    prune_ffn_neurons(model, {"encoder.layers.1": [2, 9]})
    assert model.encoder.layers[0].self_attn.num_heads == 2 and model.encoder.layers[1].linear1.out_features == 14
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected)


def test_bad_removals_are_refused_before_any_change(tiny_transformer):
    with pytest.raises(ArgumentError, match=r"has 4 attention heads; indices \[4\] are out of range"):
        prune_attention_heads(tiny_transformer, {"encoder.layers.0.self_attn": [1, 4]})
    with pytest.raises(ThinningError, match="removing all 4 attention heads"):
        prune_attention_heads(tiny_transformer, {"encoder.layers.0.self_attn": [0, 1, 2, 3]})
    with pytest.raises(ArgumentError, match="is a Linear"):
        prune_ffn_neurons(tiny_transformer, {"encoder.layers.0.linear1": [0]})
    with pytest.raises(UnmatchedNameError):
        prune_attention_heads(tiny_transformer, {"encoder.layer.0.self_attn": [0]})
    with pytest.raises(ArgumentError, match="name each layer exactly"):
        prune_attention_heads(tiny_transformer, {r"encoder\.layers\.\d\.self_attn": [0]})
    assert tiny_transformer.encoder.layers[0].self_attn.num_heads == 4


def test_torch_attention_is_refused_with_the_conversion_hint():
    torch.manual_seed(0)
    model = TinyTransformer()
    with torch.no_grad():
        model.encoder.layers[0].self_attn.out_proj.weight[:, :2] = 0
    with pytest.raises(ThinningError, match="convert_attention"):
        thin_transformer(model)
