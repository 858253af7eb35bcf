"""The spec layer: annotations are the validation, for Python and YAML callers alike."""
import inspect
from collections.abc import Callable, Sequence
from typing import Literal, Optional, Union

import pytest

from distiller.errors import ArgumentError, UserError
from distiller.spec import BitWidth, Fraction, NamePatterns, PositiveInt, Real, check_value, describe_type, validated


class Toy:
    @validated
    def __init__(self, name: str, level: Fraction, weights: NamePatterns, strength: Real = 1.0,
                 levels: Optional[dict[str, Fraction]] = None, criterion: Optional[Literal["Max", "Mean_Abs"]] = None,
                 bits: Optional[BitWidth] = 8, steps: PositiveInt = 1, model=None):
        self.level, self.weights, self.strength, self.levels, self.bits = level, weights, strength, levels, bits


def make(**overrides):
    args = dict(name="toy", level=0.5, weights=["conv1.weight"])
    args.update(overrides)
    return Toy(**args)


def test_yaml_exponent_strings_become_numbers_everywhere():
    toy = make(level="5e-1", strength="1e-3", levels={"fc.weight": "2.5e-1"})
    assert (toy.level, toy.strength, toy.levels) == (0.5, 0.001, {"fc.weight": 0.25})


@pytest.mark.parametrize("overrides, argument, location, expected", [
    (dict(level=1.0), "level", (), "a number in [0, 1)"),
    (dict(level=True), "level", (), "a number in [0, 1)"),
    (dict(level="high"), "level", (), "a number in [0, 1)"),
    (dict(strength=[1]), "strength", (), "a number"),
    (dict(weights="conv1.weight"), "weights", (), "a list of string"),
    (dict(weights=["conv(1"]), "weights", (), "not a valid regular expression"),
    (dict(levels={"fc.weight": 1.5}), "levels", ("fc.weight",), "expects a number in [0, 1), got 1.5"),
    (dict(criterion="max"), "criterion", (), "'Max' or 'Mean_Abs' or None"),
    (dict(bits=0), "bits", (), "an integer in [1, 32] or None"),
    (dict(bits="8"), "bits", (), "an integer in [1, 32]"),
    (dict(bits=True), "bits", (), "an integer in [1, 32]"),
    (dict(steps=0), "steps", (), "an integer > 0"),
])
def test_bad_values_name_class_argument_place_expectation_and_value(overrides, argument, location, expected):
    with pytest.raises(ArgumentError) as info:
        make(**overrides)
    err = info.value
    assert isinstance(err, UserError) and isinstance(err, ValueError)
    assert (err.argument, err.location) == (argument, location)
    message = str(err)
    assert message.startswith(f"Toy: argument '{argument}") and expected in message
    given = overrides[argument]
    for part in location:
        given = given[part]
    assert f"got {given!r}" in message


def test_unannotated_arguments_pass_through_and_signature_is_kept():
    sentinel = object()
    assert make(model=sentinel).bits == 8
    assert list(inspect.signature(Toy).parameters)[:3] == ["name", "level", "weights"]


def test_wrong_argument_names_stay_python_type_errors():
    with pytest.raises(TypeError, match="unexpected keyword"):
        make(levle=0.3)


def test_check_value_and_describe_type_directly():
    assert check_value("X", "level", Fraction, 0) == 0.0
    assert describe_type(Optional[dict[str, Fraction]]) == "a mapping of string to number in [0, 1) or None"
    assert describe_type(Optional[Callable[[float, float], object]]) == "a callable or None"


def test_fixed_length_tuples_describe_each_position():
    pair = tuple[Real, Literal["Filters", "Channels"]]
    assert describe_type(pair) == "a list [number, 'Filters' or 'Channels']"
    with pytest.raises(ArgumentError) as info:
        check_value("X", "regims", dict[str, pair], {"w": (0.1, "Filter")})
    assert (info.value.argument, info.value.location) == ("regims", ("w", 1))
    assert "argument 'regims['w'][1]' expects 'Filters' or 'Channels', got 'Filter'" in str(info.value)


def test_a_subclass_inheriting_a_validated_init_is_named_in_errors():
    class SubToy(Toy):
        pass

    with pytest.raises(ArgumentError, match=r"^SubToy: argument 'level' expects a number in \[0, 1\)"):
        SubToy(name="toy", level=1.0, weights=["w"])


def test_a_union_reports_the_member_that_matched_furthest():
    with pytest.raises(ArgumentError) as info:
        check_value("X", "names", Optional[Union[str, Sequence[str]]], ["conv", 3])
    assert info.value.location == (1,)
    assert "argument 'names[1]' expects a string, got 3" in str(info.value)
