"""A fused pruning + regularization + quantization-aware-training run resumed from a checkpoint ends with the
weights and masks of the uninterrupted run."""
import pytest
import torch

import distiller
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.testing import train_with_scheduler


@pytest.mark.parametrize("order", [("conv1_filters", "conv2_elements", "fc_l1", "qat", "lr"),
                                   ("qat", "conv2_elements", "lr", "fc_l1", "conv1_filters")],
                         ids=["pruners_first", "quantizer_first"])
def test_resumed_fused_run_equals_uninterrupted_run(order, fused_schedule, model_and_optimizer, fusion_batches,
                                                    tmp_path):
    schedule = fused_schedule(order)
    model, optimizer = model_and_optimizer()
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, fusion_batches, epochs=2)

    first, first_opt = model_and_optimizer()
    first_sched = distiller.config.dict_config(first, first_opt, schedule)
    train_with_scheduler(first, first_opt, first_sched, fusion_batches, epochs=1)
    path = save_checkpoint(0, "tiny", first, first_opt, first_sched, dir=str(tmp_path))
    saved_masks = torch.load(path, weights_only=True)["compression_sched"]["masks_dict"]
    assert {name for name, mask in saved_masks.items() if mask is not None} == \
        {"conv1.float_weight", "conv2.float_weight"}

    fresh, fresh_opt = model_and_optimizer(seed=123)  # everything must come from the checkpoint
    fresh, loaded_sched, loaded_opt, start_epoch = load_checkpoint(fresh, path, optimizer=fresh_opt)
    resumed = distiller.config.dict_config(fresh, loaded_opt, schedule, loaded_sched, start_epoch - 1)
    train_with_scheduler(fresh, loaded_opt, resumed, fusion_batches, epochs=1, start_epoch=start_epoch)

    expected, actual = model.state_dict(), fresh.state_dict()
    assert list(expected) == list(actual)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    for name, masker in scheduler.zeros_mask_dict.items():
        resumed_mask = resumed.zeros_mask_dict[name].mask
        assert (masker.mask is None and resumed_mask is None) or torch.equal(masker.mask, resumed_mask), name
    assert int((fresh.conv1.weight.flatten(1).abs().amax(dim=1) == 0).sum()) == 4  # pruned filters, quantized
