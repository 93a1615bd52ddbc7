"""The bounded YAML reader: alias bombs, deep nesting, duplicate keys and large files are
refused with one short line; ordinary recipes and studies read as `yaml.safe_load` reads them."""

from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from tricklab.cli.main import main
from tricklab.errors import UserInputError
from tricklab.recipe import parse_override
from tricklab.recipe.load import read_yaml
from tricklab.recipe.yaml_input import MAX_BYTES

from ..conftest import REPOSITORY, TINY_RECIPE


def bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each anchored list (`a` to `i`) repeats the previous `width` times."""
    names = "abcdefghij"[:levels]
    lines = [f"a: &a [{','.join(['lol'] * width)}]"]
    lines += [f"{name}: &{name} [{','.join([f'*{previous}'] * width)}]"
              for previous, name in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


def write(folder: Path, text: str, name: str = "input.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    """`read_yaml`'s one-line message for `path` (a bomb it built would never come back)."""
    with pytest.raises(UserInputError) as raised:
        read_yaml(path)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_billion_laughs_is_refused_at_once_without_building_it(tmp_path):
    path = write(tmp_path, bomb())
    assert len(path.read_bytes()) < 400  # 9**9 = 387,420,489 "lol"s once expanded
    tracemalloc.start()
    try:
        message = refusal(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message == (
        f"{path}: too many nodes at line 6: with aliases expanded, the document has more "
        "than 100,000 nodes (at most 100,000)"
    )
    assert peak < 5 * 2**20


def test_an_alias_bomb_of_long_strings_is_refused_by_its_text(tmp_path):
    text = f"big: &big '{'x' * 100_000}'\n" + f"many: [{', '.join(['*big'] * 30)}]\n"
    assert refusal(write(tmp_path, text)) == (
        f"{tmp_path / 'input.yaml'}: too much text at line 2: with aliases expanded, the "
        "document has more than 2,097,152 characters (at most 2,097,152)"
    )


def test_ten_thousand_brackets_are_refused_not_a_recursion_error(tmp_path):
    path = write(tmp_path, "[" * 10_000 + "]" * 10_000)
    assert refusal(path) == (
        f"{path}: nesting too deep at line 1: more than 64 levels of lists and mappings "
        "(at most 64)"
    )


def test_nesting_through_aliases_counts_as_expanded(tmp_path):
    deep = "[" * 40 + "]" * 40
    path = write(tmp_path, f"a: &a {deep}\nb:\n  c: {'[' * 30}*a{']' * 30}\n")
    assert refusal(path) == (
        f"{path}: nesting too deep at line 3: with aliases expanded, more than 64 levels "
        "of lists and mappings (at most 64)"
    )
    # 64 levels are allowed
    allowed = write(tmp_path, f"a: {'[' * 63}1{']' * 63}\n", "allowed.yaml")
    assert read_yaml(allowed) == yaml.safe_load(allowed.read_text())


def test_a_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, "a: &loop\n  - 1\n  - *loop\n")
    assert refusal(path) == (
        f"{path}: recursive alias *loop at line 3: it is inside its own anchor &loop, "
        "so it would never end"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nseed: 1\nname: b\n",
         "duplicate key 'name' at line 3 (first at line 1): a key may appear only once "
         "in a mapping"),
        ("train:\n  epochs: 3\n  optimizer: sgd\n  epochs: 5\n",
         "duplicate key 'epochs' at line 4 (first at line 2): a key may appear only once "
         "in a mapping"),
        # equal once read: the mapping would keep one of them
        ("{1: a,\n 1.0: b}\n",
         "duplicate key '1.0' at line 2 (first at line 1): a key may appear only once "
         "in a mapping"),
    ],
)
def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path, text, message):
    path = write(tmp_path, text)
    assert refusal(path) == f"{path}: {message}"


def test_a_merge_may_still_override_keys(tmp_path):
    path = write(tmp_path, "base: &base {units: 8, activation: relu}\n"
                           "layer: {<<: *base, units: 16}\n")
    assert read_yaml(path)["layer"] == {"units": 16, "activation": "relu"}
    duplicate = write(tmp_path, "layer: {<<: {units: 8}, units: 16, units: 32}\n", "dup.yaml")
    assert "duplicate key 'units' at line 1" in refusal(duplicate)


def test_a_file_over_one_mebibyte_is_refused_unread(tmp_path):
    # valid YAML: a comment, so only the size is at fault
    path = write(tmp_path, "#" + " " * MAX_BYTES + "\nname: x\n")
    assert refusal(path) == f"{path}: more than 1,048,576 bytes of YAML (at most 1,048,576, 1 MiB)"
    just_below = write(tmp_path, "#" + " " * (MAX_BYTES - 10) + "\nname: x\n", "fits.yaml")
    assert read_yaml(just_below) == {"name": "x"}


def test_a_long_undefined_alias_gives_a_short_message(tmp_path):
    path = write(tmp_path, f"name: *{'a' * 20_000}\n")
    message = refusal(path)
    assert message.startswith(f"{path}: invalid YAML at line 1, column 7: found undefined alias")
    assert message.endswith("...")


def test_aliases_become_independent_copies(tmp_path):
    path = write(tmp_path, "a: &shared {units: 8}\nb: *shared\n")
    document = read_yaml(path)
    assert document == {"a": {"units": 8}, "b": {"units": 8}}
    document["a"]["units"] = 9  # as `--set a.units=9` does
    assert document["b"] == {"units": 8}


READABLE = sorted([*REPOSITORY.glob("recipes/**/*.yaml"), *REPOSITORY.glob("studies/*.yaml")])


@pytest.mark.parametrize("path", READABLE, ids=lambda p: str(p.relative_to(REPOSITORY)))
def test_the_repository_recipes_and_studies_read_as_safe_load_reads_them(path):
    assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8"))


def test_set_values_have_the_same_bounds():
    with pytest.raises(UserInputError) as raised:
        parse_override("data.classes=" + bomb(levels=7).replace("\n", ", ").join("{}"))
    assert str(raised.value) == (
        "--set data.classes: too many nodes at line 1: with aliases expanded, the document "
        "has more than 100,000 nodes (at most 100,000)"
    )
    with pytest.raises(UserInputError, match=r"^--set seed: nesting too deep at line 1: "):
        parse_override("seed=" + "[" * 10_000)
    with pytest.raises(UserInputError, match=r"^--set data: duplicate key 'classes' at line 1"):
        parse_override("data={classes: [1], classes: [2]}")
    with pytest.raises(UserInputError, match=r"^--set name: more than 1,048,576 bytes of YAML"):
        parse_override("name=" + "x" * (MAX_BYTES + 1))
    # text that is not YAML stays a string, as before
    assert parse_override("name=[1,") == (["name"], "[1,")


# --- through the command line -------------------------------------------------------------


def test_train_refuses_a_billion_laughs_recipe_quickly(fixture_data, tmp_path, capsys):
    path = write(tmp_path, bomb() + "name: *i\n", "billion.yaml")
    started = time.perf_counter()
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert time.perf_counter() - started < 5.0  # the command's imports included
    err = capsys.readouterr().err
    assert err == (
        f"error: {path}: too many nodes at line 6: with aliases expanded, the document has "
        "more than 100,000 nodes (at most 100,000)\n"
    )
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_set_bomb_quickly(fixture_data, tmp_path, capsys):
    path = write(tmp_path, yaml.safe_dump(TINY_RECIPE), "recipe.yaml")
    value = bomb(levels=6, width=10).replace("\n", ", ").join("{}")  # 10**6 once expanded
    started = time.perf_counter()
    code = main(["train", str(path), "--out", str(tmp_path / "run"), "--set", f"name={value}"])
    assert code == 2
    assert time.perf_counter() - started < 5.0  # the command's imports included
    assert capsys.readouterr().err == (
        "error: --set name: too many nodes at line 1: with aliases expanded, the document "
        "has more than 100,000 nodes (at most 100,000)\n"
    )
    assert not (tmp_path / "run").exists()


def test_summary_refuses_a_duplicate_key_with_both_lines(tmp_path, capsys):
    text = yaml.safe_dump(TINY_RECIPE, sort_keys=False) + "name: other\n"
    path = write(tmp_path, text, "recipe.yaml")
    assert main(["summary", str(path)]) == 2
    last = len(text.splitlines())
    assert capsys.readouterr().err == (
        f"error: {path}: duplicate key 'name' at line {last} (first at line 1): a key may "
        "appear only once in a mapping\n"
    )
