import time

import pytest

from tricklab.errors import did_you_mean, edit_distance, shown_value, unknown_name_message

OPTIMIZERS = ["adagrad", "adam", "adamax", "adamw", "ftrl", "nadam", "rmsprop", "sgd"]


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("adma", "adam", 1), ("adam", "adamax", 2), ("sgd", "sdg", 1), ("", "abc", 3),
     ("kitten", "sitting", 3), ("same", "same", 0)],
)
def test_edit_distance_counts_adjacent_swaps_as_one(a, b, distance):
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


@pytest.mark.parametrize(
    ("typo", "expected"),
    [("adma", "adam"), ("sdg", "sgd"), ("rmsprp", "rmsprop"), ("Nadam", "nadam"), ("xyz", None)],
)
def test_did_you_mean_picks_the_closest_name(typo, expected):
    message = did_you_mean(typo, OPTIMIZERS)
    assert message == (f"; did you mean '{expected}'?" if expected else "")


def test_unknown_name_message_is_one_line_with_the_known_names():
    message = unknown_name_message("train.optimizer.name", "optimizer", "adma", OPTIMIZERS)
    assert message == (
        "train.optimizer.name: unknown optimizer 'adma'; did you mean 'adam'? Known: "
        + ", ".join(OPTIMIZERS)
    )
    assert unknown_name_message("x", "optimizer", "zzz", ["sgd"]) == (
        "x: unknown optimizer 'zzz'; known: sgd"
    )


def test_unknown_name_message_shows_a_long_or_multiline_value_short_on_one_line():
    started = time.perf_counter()
    message = unknown_name_message("train.optimizer.name", "optimizer", "adam" * 5000, OPTIMIZERS)
    assert time.perf_counter() - started < 0.1  # no letter-by-letter comparison of 20,000
    assert message == (
        "train.optimizer.name: unknown optimizer "
        f"'{'adam' * 9}a...am{'adam' * 9}'; known: " + ", ".join(OPTIMIZERS)
    )
    assert unknown_name_message("x", "optimizer", "ad\nma", OPTIMIZERS).startswith(
        "x: unknown optimizer 'ad\\nma'; did you mean 'adamax'?"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("adma", "'adma'"),
        ("a\nb", "'a\\nb'"),
        ("x" * 1000, "'" + "x" * 37 + "..." + "x" * 38 + "'"),
        (list(range(1000)), "[0, 1, 2, 3, 4, 5, 6, 7, ...]"),
        ({"a": {"b": {"c": {"d": 1}}}}, "{'a': {'b': {'c': {...}}}}"),
        (3.5, "3.5"),
    ],
)
def test_shown_value_is_one_short_line(value, shown):
    assert shown_value(value) == shown
    assert len(shown_value(value)) <= 80


def test_shown_value_escapes_a_multiline_repr():
    class Table:
        def __repr__(self) -> str:
            return "row 1\nrow 2"

    assert shown_value(Table()) == "row 1\\nrow 2"
