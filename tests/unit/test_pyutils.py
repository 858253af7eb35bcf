"""Distiller's plain-Python helpers (distiller.pyutils, importable from distiller.utils)."""
import argparse
from collections import OrderedDict

import pytest
import torch
import yaml

from distiller.errors import ArgumentError
from distiller.utils import (MutableNamedTuple, filter_kwargs, float_range_argparse_checker, is_scalar, pretty_int,
                             size2str, size_to_str, yaml_ordered_load, yaml_ordered_save)


def test_shapes_and_numbers_format_as_in_distiller():
    assert size_to_str(torch.Size([64, 3, 7, 7])) == "(64, 3, 7, 7)"
    assert size2str(torch.zeros(2, 5)) == "(2, 5)"
    assert size2str((1, 3)) == "(1, 3)"
    assert pretty_int(1234567) == "1,234,567"
    with pytest.raises(TypeError, match="torch.Size, a tuple of ints or a tensor"):
        size2str("2x5")


def test_mutable_named_tuple_keys_are_attributes():
    stats = MutableNamedTuple({"top1": 0.0, "epoch": 0})
    stats.top1 = 71.5
    stats.top5 = 90.0
    assert stats == {"top1": 71.5, "epoch": 0, "top5": 90.0}
    assert stats.epoch == 0
    with pytest.raises(AttributeError, match="no field 'loss'"):
        _ = stats.loss


def test_yaml_ordered_round_trip_keeps_key_order(tmp_path):
    text = "zeta: 1\nalpha:\n  second: 2\n  first: 1\nmid: [3, 1]\n"
    loaded = yaml_ordered_load(text)
    assert isinstance(loaded, OrderedDict) and isinstance(loaded["alpha"], OrderedDict)
    assert list(loaded) == ["zeta", "alpha", "mid"] and list(loaded["alpha"]) == ["second", "first"]
    path = tmp_path / "sched.yaml"
    yaml_ordered_save(str(path), loaded)
    assert path.read_text().splitlines()[0] == "zeta: 1"
    assert yaml_ordered_load(path.read_text()) == loaded
    assert yaml.safe_load(path.read_text()) == {"zeta": 1, "alpha": {"second": 2, "first": 1}, "mid": [3, 1]}


def test_yaml_ordered_load_refuses_python_object_tags_by_default():
    with pytest.raises(yaml.YAMLError):
        yaml_ordered_load("x: !!python/object/apply:os.system ['true']")


def test_filter_kwargs_splits_accepted_from_unknown_keywords():
    def pruner(name, desired_sparsity, weights=None):
        pass

    valid, invalid = filter_kwargs({"name": "p", "weights": ["w"], "group_type": "Filters"}, pruner)
    assert valid == {"name": "p", "weights": ["w"]} and invalid == {"group_type": "Filters"}
    assert filter_kwargs({"anything": 1}, lambda **kwargs: None) == ({"anything": 1}, {})


def test_is_scalar():
    assert is_scalar(3) and is_scalar(2.5) and is_scalar(torch.tensor(1.0)) and is_scalar(torch.ones(1))
    assert not is_scalar(torch.ones(2)) and not is_scalar("3") and not is_scalar([1])


def test_float_range_argparse_checker():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sparsity", type=float_range_argparse_checker(exc_max=True))
    assert parser.parse_args(["--sparsity", "0"]).sparsity == 0.0
    check = float_range_argparse_checker(0.0, 1.0, exc_min=True, exc_max=True)
    assert check("0.5") == 0.5
    for bad in ("0", "1", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"outside the range \(0.0, 1.0\)"):
            check(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        check("half")
    with pytest.raises(ArgumentError, match="min_val=2 is greater than max_val=1"):
        float_range_argparse_checker(2, 1)
