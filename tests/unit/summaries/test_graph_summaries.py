"""Connectivity and attribute summaries of a SummaryGraph; model_summary; the compute table."""
import logging

import pytest
import torch

from distiller.errors import ArgumentError
from distiller.summaries import (attributes_summary, attributes_summary_tbl, connectivity_summary,
                                 connectivity_summary_verbose, connectivity_tbl_summary, model_performance_tbl_summary,
                                 model_summary)
from distiller.summary_graph import SummaryGraph
from distiller.testing import TinyCNN


@pytest.fixture
def graph():
    return SummaryGraph(TinyCNN(), torch.randn(1, 3, 8, 8))


def test_connectivity_summary_lists_each_op_with_its_neighbours(graph):
    df = connectivity_summary(graph)
    conv2 = df[df["Name"] == "conv2"].iloc[0]
    assert conv2["Type"] == "Conv2d" and conv2["Inputs"] == ["relu1"] and conv2["Outputs"] == ["bn2"]
    assert list(df["Name"])[:2] == ["conv1", "bn1"] and "x" not in set(df["Name"])
    verbose = connectivity_summary_verbose(graph)
    row = verbose[verbose["Name"] == "conv2"].iloc[0]
    assert row["Inputs"] == "relu1 (1, 8, 8, 8)" and row["Outputs"] == "conv2 (1, 16, 8, 8)"
    assert "relu1 (1, 8, 8, 8)" in connectivity_tbl_summary(graph, verbose=True)


def test_attributes_summary_shows_module_constants_and_call_arguments(graph):
    df = attributes_summary(graph, ignore_attrs=["padding_mode"])
    conv1 = df[df["Name"] == "conv1"].iloc[0]["Attributes"]
    assert "kernel_size: (3, 3)" in conv1 and "out_channels: 8" in conv1 and "padding_mode" not in conv1
    pool = df[df["Type"] == "adaptive_avg_pool2d"].iloc[0]["Attributes"]
    assert "arg1: 1" in pool
    assert "stride: (1, 1)" in attributes_summary_tbl(graph, [])


def test_model_summary_kinds(tiny_model, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="distiller.summaries")
    compute = model_summary(tiny_model, "compute", dataset="cifar10")
    # 3*8*9*32*32 + 8*16*9*32*32 + 16*10
    assert "Total MACs: 1,400,992" in compute and compute in caplog.text
    assert "fc" in model_summary(tiny_model, "modules") and "Conv2d" in model_summary(tiny_model, "model")
    sparsity = model_summary(tiny_model, "sparsity", logdir=str(tmp_path))
    assert "conv1.weight" in sparsity and (tmp_path / "weights_sparsity.csv").exists()
    with pytest.raises(ArgumentError, match="unknown summary 'png'"):
        model_summary(tiny_model, "png")
    with pytest.raises(ArgumentError, match="needs the dataset"):
        model_summary(tiny_model, "compute")
    table = model_performance_tbl_summary(tiny_model, torch.randn(1, 3, 8, 8), 1)
    assert "MACs" in table and "conv2" in table
