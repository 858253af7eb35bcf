"""Connectivity and attribute summaries of a SummaryGraph; model_summary; the compute table."""
import logging
import os
import stat

import pandas
import pytest
import torch

from distiller.errors import ArgumentError, MissingDependencyError
from distiller.summaries import (attributes_summary, attributes_summary_tbl, connectivity_summary,
                                 connectivity_summary_verbose, connectivity_tbl_summary, model_performance_tbl_summary,
                                 model_summary)
from distiller.summaries.sparsity import WEIGHTS_SPARSITY_COLUMNS
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
    assert "conv1.weight" in sparsity and "Ch (%)" in sparsity
    csv = pandas.read_csv(tmp_path / "weights_sparsity.csv")
    assert list(csv.columns) == WEIGHTS_SPARSITY_COLUMNS and csv["Name"].iloc[-1] == "Total sparsity:"
    with pytest.raises(ArgumentError, match="unknown summary 'pngs'"):
        model_summary(tiny_model, "pngs")
    with pytest.raises(ArgumentError, match="needs the dataset"):
        model_summary(tiny_model, "compute")
    with pytest.raises(ArgumentError, match=r"what='png'\) needs the dataset"):
        model_summary(tiny_model, "png")
    table = model_performance_tbl_summary(tiny_model, torch.randn(1, 3, 8, 8), 1)
    assert "MACs" in table and "conv2" in table


def fake_dot(directory):
    """A stand-in for Graphviz's ``dot`` that writes its DOT input file, labelled, as the 'image'."""
    script = directory / "dot"
    script.write_text('#!/bin/sh\nfor last; do :; done\necho FAKE-IMAGE; cat "$last"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(directory)


@pytest.mark.parametrize("what, params_drawn", [("png", False), ("png_w_params", True)])
def test_model_summary_draws_the_graph_to_model_png(tiny_model, tmp_path, monkeypatch, what, params_drawn):
    monkeypatch.setenv("PATH", fake_dot(tmp_path) + os.pathsep + os.environ["PATH"])
    text = model_summary(tiny_model, what, dataset="cifar10", logdir=str(tmp_path))
    drawing = (tmp_path / "model.png").read_text()
    assert str(tmp_path / "model.png") in text and drawing.startswith("FAKE-IMAGE")
    assert "conv1" in drawing and ("conv1.weight" in drawing) == params_drawn


def test_model_summary_png_without_graphviz_says_what_to_install(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot there
    with pytest.raises(MissingDependencyError, match="Graphviz's 'dot' program"):
        model_summary(tiny_model, "png", dataset="cifar10", logdir=str(tmp_path))
    assert not (tmp_path / "model.png").exists()
