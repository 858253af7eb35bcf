"""get_contents_table: a readable table of a checkpoint's entries."""
import torch

from distiller.apputils.checkpoint import get_contents_table


def test_contents_table_summarizes_values_sorted_by_key():
    table = get_contents_table({"state_dict": {"a": torch.zeros(2)}, "epoch": 3, "arch": "resnet20_cifar",
                                "mask": torch.ones(2, 3), "extras": [1, 2], "optimizer_type": None})
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["arch", "epoch", "extras", "mask",
                                                                   "optimizer_type", "state_dict"]
    assert "resnet20_cifar" in table and "tensor (2, 3) float32" in table
    assert "1 entries" in table and "2 items" in table
