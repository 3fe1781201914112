import pytest

from spacy_unmask.errors import ConfigError
from spacy_unmask.layer_groups import LayerGroups, group_bounds


@pytest.mark.parametrize(
    "spec,n,expected",
    [
        ("none", 8, set()),
        ("all", 8, set(range(8))),
        ("first_half", 8, {0, 1, 2, 3}),
        ("second_half", 8, {4, 5, 6, 7}),
        ("first_half", 5, {0, 1}),
        ("second_half", 5, {2, 3, 4}),
        ("1100", 32, set(range(16))),
        ("0010", 32, set(range(16, 24))),
        ("0001", 30, set(range(23, 30))),
        ("1000", 30, set(range(0, 8))),
        ("0-7,12", 16, set(range(8)) | {12}),
        ("3", 8, {3}),
        ("10-10", 16, {10}),
        (" 0-1 , 5 ", 8, {0, 1, 5}),
        ("ALL", 4, {0, 1, 2, 3}),
    ],
)
def test_every_form_resolves_to_the_documented_layers(spec, n, expected):
    assert LayerGroups.parse(spec).layers(n) == frozenset(expected)


def test_patterns_split_layers_into_contiguous_near_equal_groups():
    assert group_bounds(30, 4) == ((0, 8), (8, 16), (16, 23), (23, 30))
    assert group_bounds(32, 4) == ((0, 8), (8, 16), (16, 24), (24, 32))
    assert group_bounds(4, 4) == ((0, 1), (1, 2), (2, 3), (3, 4))


@pytest.mark.parametrize("bad", ["banana", "", "11x1", "1-", "-3", "3-1", "0-7;12", "half", None, 1.5, True, [1]])
def test_malformed_values_fail_naming_key_value_and_forms(bad):
    with pytest.raises(ConfigError) as err:
        LayerGroups.parse(bad)
    message = str(err.value)
    assert message.startswith(f"unmask={bad!r}")
    assert "first_half" in message and "1100" in message and "0-7,12" in message


@pytest.mark.parametrize("number", [1100, 10, 1, 0])
def test_numbers_are_refused_because_they_lose_leading_zeros(number):
    # spaCy's command line turns --...unmask 0010 into the integer 10
    with pytest.raises(ConfigError, match=r"not a number.*leading zeros.*Quote it"):
        LayerGroups.parse(number)


def test_indices_beyond_the_kept_layers_fail_with_the_valid_range():
    groups = LayerGroups.parse("9-12")
    with pytest.raises(ConfigError, match=r"unmask='9-12'.*keeps 8 layers.*0 to 7"):
        groups.layers(8)


def test_a_pattern_longer_than_the_layers_fails():
    with pytest.raises(ConfigError, match=r"unmask='11110'.*5 groups.*only 4 layers"):
        LayerGroups.parse("11110").layers(4)
