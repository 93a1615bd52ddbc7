"""A bounded, safe YAML reader for everything a user hands tricklab: recipes, studies, `--set`.

`yaml.safe_load` never builds Python objects, but it trusts the input's size:
a 400-byte "billion laughs" document (anchors whose aliases repeat each
other) expands to billions of values, 10,000 nested `[` end in a
`RecursionError`, and a duplicated key silently replaces the first. This
reader refuses all three, each with one line naming the source, the line and
the limit:

- a file (or `--set` value) holds at most `MAX_BYTES`;
- lists and mappings nest at most `MAX_DEPTH` levels, aliases expanded;
- the document, its aliases expanded, holds at most `MAX_NODES` nodes and
  `MAX_CHARACTERS` characters of scalar text; this is counted on the composed
  node graph (an alias adds the size of its anchor, known once the anchor is
  composed), so the expansion is never built and a bomb is refused at the
  first alias that crosses the limit;
- a key appears at most once in a mapping (a merge `<<: *base` may still be
  overridden: that is what merging is for).

What it returns equals `yaml.safe_load`'s result, except that an alias becomes
an independent copy of its anchor, so changing one place (`--set`) never
changes another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tricklab.errors import UserInputError, shown_value

MAX_BYTES = 1024 * 1024
"""The largest YAML input, in bytes: recipes and studies are a few kilobytes."""

MAX_DEPTH = 64
"""The deepest nesting of lists and mappings (a resolved recipe nests about 6 levels)."""

MAX_NODES = 100_000
"""The most nodes (scalars, lists, mappings) of a document with its aliases expanded."""

MAX_CHARACTERS = 2 * MAX_BYTES
"""The most characters of scalar text in a document with its aliases expanded."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's `SafeLoader` with bounds on size, depth and alias expansion, and no duplicate keys.

    Only plain data is constructed (the safe constructors: no Python objects).

    Args:
        stream: The YAML text.
        source: What the text is, for messages: a file path or `--set PATH`.
    """

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self._open = 0  # lists and mappings being composed around the current node
        self._nodes = 0  # nodes of the expanded document so far
        self._characters = 0  # scalar text of the expanded document so far
        self._depth: dict[int, int] = {}  # id(node) -> nesting levels of its expanded tree
        self._size: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (nodes, characters)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, counting it (or, for an alias, its anchor's expansion) first."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._count_alias(node, event)
            return node
        before = (self._nodes, self._characters)
        scalar = isinstance(event, yaml.ScalarEvent)
        self._add(1, len(event.value) if scalar else 0, event.start_mark)
        if not scalar:
            self._open += 1
            if self._open > MAX_DEPTH:
                raise self._refusal(
                    event.start_mark, "nesting too deep",
                    f": more than {MAX_DEPTH} levels of lists and mappings (at most {MAX_DEPTH})",
                )
        node = super().compose_node(parent, index)
        if scalar:
            self._depth[id(node)] = 0
        else:
            self._open -= 1
            children = (
                [child for pair in node.value for child in pair]
                if isinstance(node, yaml.MappingNode) else node.value
            )
            self._depth[id(node)] = 1 + max((self._depth[id(c)] for c in children), default=0)
        if event.anchor is not None:
            self._size[id(node)] = (self._nodes - before[0], self._characters - before[1])
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        """Compose a mapping; refuse a key written twice (PyYAML would keep the last)."""
        node = super().compose_mapping_node(anchor)
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            # Compared as constructed, as the mapping would be: `1` and `1.0` are one key.
            key = self.construct_object(key_node)
            try:
                first = first_lines.get(key)
            except TypeError:  # unhashable: the constructor reports it
                continue
            if first is not None:
                raise self._refusal(
                    key_node.start_mark, f"duplicate key {shown_value(key_node.value)}",
                    f" (first at line {first}): a key may appear only once in a mapping",
                )
            first_lines[key] = key_node.start_mark.line + 1
        return node

    def _count_alias(self, node: yaml.Node, event: yaml.AliasEvent) -> None:
        if id(node) not in self._depth:  # its anchor is still being composed
            alias = shown_value(event.anchor, 40)[1:-1]
            raise self._refusal(
                event.start_mark, f"recursive alias *{alias}",
                f": it is inside its own anchor &{alias}, so it would never end",
            )
        if self._open + self._depth[id(node)] > MAX_DEPTH:
            raise self._refusal(
                event.start_mark, "nesting too deep",
                f": with aliases expanded, more than {MAX_DEPTH} levels of lists and mappings "
                f"(at most {MAX_DEPTH})",
            )
        self._add(*self._size[id(node)], event.start_mark)

    def _add(self, nodes: int, characters: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        self._characters += characters
        if self._nodes > MAX_NODES:
            raise self._refusal(
                mark, "too many nodes",
                f": with aliases expanded, the document has more than {MAX_NODES:,} nodes "
                f"(at most {MAX_NODES:,})",
            )
        if self._characters > MAX_CHARACTERS:
            raise self._refusal(
                mark, "too much text",
                f": with aliases expanded, the document has more than {MAX_CHARACTERS:,} "
                f"characters (at most {MAX_CHARACTERS:,})",
            )

    def _refusal(self, mark: yaml.Mark, what: str, detail: str) -> UserInputError:
        return UserInputError(f"{self.source}: {what} at line {mark.line + 1}{detail}")


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document within the bounds of `BoundedSafeLoader`.

    Args:
        text: The YAML text.
        source: What the text is, for messages: a file path or `--set PATH`.

    Raises:
        UserInputError: When a bound is crossed or a key is duplicated.
        yaml.YAMLError: When the text is not YAML (see `yaml_error_line`).
    """
    # A character is at least one byte: a long text is refused before it is encoded.
    if len(text) > MAX_BYTES or len(text.encode("utf-8", errors="surrogatepass")) > MAX_BYTES:
        raise UserInputError(_too_large(source))
    loader = BoundedSafeLoader(text, source)
    try:
        return _unshared(loader.get_single_data())
    finally:
        loader.dispose()


def yaml_error_line(error: yaml.YAMLError, source: str) -> str:
    """One line for PyYAML's error: `SOURCE: invalid YAML at line L, column C: problem`."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or (str(error).splitlines() or [""])[0]
    # A problem can quote the input (an undefined alias's name): keep it short.
    if len(problem) > 200:
        problem = problem[:197] + "..."
    return f"{source}: invalid YAML{where}: {problem}"


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file within the bounds of `BoundedSafeLoader`.

    Args:
        path: The file; its path as given is what messages show.

    Raises:
        UserInputError: For a file that is too large, not UTF-8, not YAML, or
            crosses a bound.
    """
    source = shown_path(path)
    with open(path, "rb") as stream:
        # Read one byte past the bound rather than trusting the size on disk.
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UserInputError(_too_large(source))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"{source}: not a UTF-8 text file") from None
    try:
        return parse_yaml(text, source)
    except yaml.YAMLError as error:
        raise UserInputError(yaml_error_line(error, source)) from None


def shown_path(path: str | Path) -> str:
    """A path as one-line messages show it: as given, unless it is very long or not printable."""
    text = str(path)
    return text if text.isprintable() and len(text) <= 300 else shown_value(text, 300)


def _too_large(source: str) -> str:
    return f"{source}: more than {MAX_BYTES:,} bytes of YAML (at most {MAX_BYTES:,}, 1 MiB)"


def _unshared(value: Any) -> Any:
    """`value` with every list and mapping its own copy (aliases share them otherwise).

    Recursion is safe: the loader bounds the nesting at `MAX_DEPTH`.
    """
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value
