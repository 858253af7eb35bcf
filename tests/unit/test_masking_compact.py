"""Compact pruning masks: bool storage, bit-packing, old float-mask checkpoints, the memory report."""
import pytest
import torch

import distiller
from distiller.errors import ArgumentError
from distiller.masking import (MaskDict, ParameterMasker, as_bool_mask, mask_memory_report, pack_mask,
                               unpack_mask)
from distiller.pruning import AutomatedGradualPruner
from distiller.testing import TinyCNN


def _agp_scheduler(model, dtype=torch.float32):
    model.to(dtype)
    weights = ["conv1.weight", "conv2.weight", "fc.weight"]
    pruner = AutomatedGradualPruner("agp", initial_sparsity=0.3, final_sparsity=0.6, weights=weights)
    scheduler = distiller.CompressionScheduler(model)
    scheduler.add_policy(distiller.PruningPolicy(pruner, None), starting_epoch=0, ending_epoch=2, frequency=1)
    scheduler.on_epoch_begin(1)
    return scheduler, weights


def test_pruner_masks_are_stored_as_bool_at_a_quarter_of_float32_weights():
    scheduler, weights = _agp_scheduler(TinyCNN())
    for name in weights:
        assert scheduler.zeros_mask_dict[name].mask.dtype == torch.bool
    report = mask_memory_report(scheduler)
    assert report.masked_parameters == 3
    assert report.mask_to_weight == pytest.approx(0.25)
    assert report.mask_to_bf16_weight == pytest.approx(0.5)
    assert report.as_dict()["mask_bytes"] == report.masked_elements


def test_float_mask_is_converted_and_other_values_refused():
    masker = ParameterMasker("w")
    masker.mask = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert masker.mask.dtype == torch.bool and masker.mask.tolist() == [False, True, True, False]
    with pytest.raises(ArgumentError, match="'w'.*other than 0 and 1"):
        masker.mask = torch.tensor([0.0, 0.5])
    assert as_bool_mask(torch.tensor([1, 0], dtype=torch.int8)).tolist() == [True, False]


@pytest.mark.parametrize("shape", [(13,), (3, 5, 7), (8, 8), (1,)])
def test_pack_unpack_round_trip(shape):
    torch.manual_seed(0)
    mask = torch.rand(shape) > 0.5
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (mask.numel() + 7) // 8
    assert torch.equal(unpack_mask(packed, mask.shape), mask)


def test_pack_puts_element_i_in_bit_i():
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[0, 3, 9]] = True
    assert pack_mask(mask).tolist() == [0b1001, 0b10]


def test_fused_remasking_zeroes_exactly_the_masked_elements_in_float32_and_bf16():
    for dtype in (torch.float32, torch.bfloat16):
        model = TinyCNN()
        scheduler, weights = _agp_scheduler(model, dtype)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in weights:
                params[name].fill_(3.0)
        scheduler.mask_all_weights(is_forward=False)
        for name in weights:
            mask = scheduler.zeros_mask_dict[name].mask
            assert params[name].dtype == dtype
            assert torch.equal(params[name] != 0, mask)


def test_packed_masks_are_applied_and_take_a_sixteenth_of_bf16_weights():
    model = TinyCNN()
    scheduler, weights = _agp_scheduler(model)
    before = {name: scheduler.zeros_mask_dict[name].mask.clone() for name in weights}
    packed = scheduler.zeros_mask_dict.pack(min_numel=0)
    assert set(weights) <= set(packed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in weights:
            params[name].fill_(1.0)
    scheduler.mask_all_weights(is_forward=False)
    for name in weights:
        masker = scheduler.zeros_mask_dict[name]
        assert masker.packed and torch.equal(masker.mask, before[name])
        assert masker.mask_bytes == (params[name].numel() + 7) // 8
        assert torch.equal(params[name] != 0, before[name])
    report = mask_memory_report(scheduler)
    assert report.mask_bytes == report.packed_mask_bytes
    assert report.mask_to_bf16_weight <= 1 / 16 + 1e-3
    # A mask set later on a packed masker is packed too; unpacking restores bool storage.
    masker = scheduler.zeros_mask_dict["conv1.weight"]
    masker.mask = torch.ones_like(params["conv1.weight"])
    assert masker.mask_bytes == (params["conv1.weight"].numel() + 7) // 8
    masker.packed = False
    assert masker.mask_bytes == params["conv1.weight"].numel() and masker.mask.all()


def test_pack_with_model_marks_maskers_before_masks_exist():
    model = TinyCNN()
    masks = distiller.create_model_masks_dict(model)
    names = masks.pack(min_numel=100, model=model)
    assert "conv2.weight" in names and "fc.bias" not in names
    masks["conv2.weight"].mask = torch.ones_like(model.conv2.weight)
    assert masks["conv2.weight"].mask_bytes == (model.conv2.weight.numel() + 7) // 8


def test_old_float_mask_checkpoint_state_loads_as_bool():
    model = TinyCNN()
    old_mask = (torch.rand_like(model.conv2.weight) > 0.5).float()     # what Distiller wrote: float32 0/1
    scheduler = distiller.CompressionScheduler(model)
    scheduler.load_state_dict({"masks_dict": {"module.conv2.weight": old_mask, "fc.weight": None}})
    loaded = scheduler.zeros_mask_dict["conv2.weight"].mask
    assert loaded.dtype == torch.bool and torch.equal(loaded, old_mask.bool())
    saved = scheduler.state_dict()["masks_dict"]["conv2.weight"]
    assert saved.dtype == torch.bool


def test_memory_report_counts_double_copies_and_needs_the_model():
    model = TinyCNN()
    scheduler, _ = _agp_scheduler(model)
    scheduler.zeros_mask_dict["fc.weight"].use_double_copies = True
    report = mask_memory_report(scheduler.zeros_mask_dict, model)
    assert report.double_copy_bytes == model.fc.weight.numel() * 4
    assert report.quantized_buffer_bytes == 0
    with pytest.raises(ArgumentError, match="needs the model"):
        mask_memory_report(MaskDict())


def test_memory_report_counts_quantization_aware_training_buffers():
    model = TinyCNN()
    quantizer = distiller.quantization.QuantAwareTrainRangeLinearQuantizer(model, bits_activations=8,
                                                                          bits_weights=4)
    quantizer.prepare_model(torch.randn(1, 3, 8, 8))
    report = mask_memory_report(distiller.CompressionScheduler(model))
    quantized = [name for name, _ in model.named_parameters() if ".float_" in f".{name}"]
    assert quantized
    assert report.quantized_buffer_bytes == sum(model.get_parameter(n).numel() * 4 for n in quantized)


def test_remasking_keeps_no_unpacked_copy_of_packed_masks_and_multiplies_bool_masks_as_uint8():
    model = TinyCNN()
    scheduler, weights = _agp_scheduler(model)
    scheduler.zeros_mask_dict["conv2.weight"].packed = True
    scheduler.mask_all_weights(is_forward=False)
    # The fused re-masking's cached operands (internal; the only place an unpacked copy could be held).
    params, multipliers, packed = scheduler._fused_cache[1]
    assert [param is model.conv2.weight for param, _ in packed] == [True]
    assert all(param is not model.conv2.weight for param in params)
    assert {m.dtype for m in multipliers} == {torch.uint8}
    assert all(m.untyped_storage().data_ptr() == scheduler.zeros_mask_dict[n].mask.untyped_storage().data_ptr()
               for n, m in zip(["conv1.weight", "fc.weight"], multipliers))   # views, not copies


def test_pack_again_lists_masks_packed_before():
    masks = MaskDict()
    masks["w"].mask = torch.ones(64, dtype=torch.bool)
    assert masks.pack() == ["w"] and masks.pack() == ["w"]
    assert masks["w"].mask_numel == 64 and masks["w"].mask_bytes == 8
