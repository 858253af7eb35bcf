"""Weights and mask sparsity summaries (Distiller's weights_sparsity_summary family)."""
import pytest
import torch
from torch import nn

from distiller import CompressionScheduler
from distiller.errors import ArgumentError
from distiller.summaries import (WEIGHTS_SPARSITY_COLUMNS, masks_sparsity_summary, masks_sparsity_tbl_summary,
                                 weights_sparsity_summary, weights_sparsity_tbl_summary)


@pytest.fixture
def pruned_model():
    """conv 4x2x3x3 with filter 0 and channel 1 zero; fc 3x4 with input column 3 zero."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[0] = 0        # one of 4 filters
        model[0].weight[:, 1] = 0     # one of 2 channels
        model[2].weight.fill_(-2.0)
        model[2].weight[:, 3] = 0     # one of 4 input columns
    return model


def test_weights_sparsity_summary_per_structure(pruned_model):
    df, total = weights_sparsity_summary(pruned_model, return_total_sparsity=True)
    assert list(df.columns) == WEIGHTS_SPARSITY_COLUMNS
    conv, fc, totals = (df.iloc[i] for i in range(3))
    assert conv["Name"] == "0.weight" and conv["Shape"] == "(4, 2, 3, 3)"
    assert (conv["NNZ (dense)"], conv["NNZ (sparse)"]) == (72, 27)     # 3 filters x 1 channel x 9
    assert conv["3D (%)"] == pytest.approx(25.0) and conv["Ch (%)"] == pytest.approx(50.0)
    assert conv["2D (%)"] == pytest.approx(62.5) and conv["Fine (%)"] == pytest.approx(62.5)
    assert fc["Rows (%)"] == pytest.approx(25.0) and fc["Cols (%)"] == pytest.approx(0.0)
    assert fc["Abs-Mean"] == pytest.approx(1.5) and fc["Mean"] == pytest.approx(-1.5)
    assert totals["Name"] == "Total sparsity:" and totals["NNZ (dense)"] == 84 and totals["NNZ (sparse)"] == 36
    assert total == pytest.approx(100 * 48 / 84) == pytest.approx(totals["Fine (%)"])


def test_tables_and_rank_selection(pruned_model):
    table, total = weights_sparsity_tbl_summary(pruned_model, return_total_sparsity=True)
    assert "0.weight" in table and "Total sparsity:" in table
    only_fc = weights_sparsity_summary(pruned_model, param_dims=[2])
    assert list(only_fc["Name"]) == ["2.weight", "Total sparsity:"]
    with pytest.raises(ArgumentError, match="no weight or bias of rank"):
        weights_sparsity_summary(pruned_model, param_dims=[3])


def test_masks_sparsity_summary_reads_the_scheduler_masks(pruned_model):
    scheduler = CompressionScheduler(pruned_model)
    mask = torch.ones(3, 4)
    mask[0] = 0
    scheduler.zeros_mask_dict["2.weight"].mask = mask
    df = masks_sparsity_summary(pruned_model, scheduler)
    assert df["Fine (%)"].tolist() == pytest.approx([0.0, 100 / 3, 100 * 4 / 84])
    assert "Total sparsity:" in masks_sparsity_tbl_summary(pruned_model, scheduler)
