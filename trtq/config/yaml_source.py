"""YAML loading that remembers the line of every key, so validation errors can name file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from trtq.errors import TrtqError

# YAML 1.1 (PyYAML) reads 4e-3 and 1e9 as strings: it wants a dot in a float. This resolver also
# takes YAML 1.2 exponents without one; .inf and .nan stay floats, for the schema to reject.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


MAX_VALUES = 100_000
"""Values (keys, scalars, collections) a config may hold with its aliases expanded; configs hold
hundreds. Aliases let a few lines stand for billions (the "billion laughs" bomb), which validation
and the key-line walk would then visit one by one."""
MAX_DEPTH = 64
"""Nesting a config may have, aliases expanded (configs nest four deep); deeper would exhaust
Python's recursion in composing or validating."""


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader whose floats also accept YAML 1.2 exponents (4e-3), and that refuses recursive
    aliases and documents whose aliases expand beyond MAX_VALUES values or MAX_DEPTH levels.

    Sizes are counted while composing, where every node is seen once: an alias adds the size of
    the (finished) node it names, so a bomb is refused after reading its few lines.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_anchors: set[str] = set()
        self._expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) expanded
        self._nesting = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = cast("yaml.Mark | None", event.start_mark)
        anchor: str | None = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            if anchor in self._open_anchors:
                raise _refusal(f"alias *{anchor} is inside the collection it names (a recursive alias)", mark)
            anchor = None  # names a finished node, measured already
        self._nesting += 1
        if self._nesting > MAX_DEPTH:
            raise _refusal(f"nested deeper than {MAX_DEPTH} levels", mark)
        if anchor is not None:
            self._open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        self._open_anchors.discard(anchor or "")
        self._nesting -= 1
        if node is not None:
            values, depth = self._measure(node)
            if values > MAX_VALUES:
                raise _refusal(
                    f"with its aliases expanded this holds more than {MAX_VALUES} values (an alias bomb?)",
                    mark,
                )
            if depth > MAX_DEPTH:
                raise _refusal(f"with its aliases expanded this nests deeper than {MAX_DEPTH} levels", mark)
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """(values, depth) of ``node`` expanded; its children were measured when composed."""
        known = self._expanded.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        measured = [self._expanded[id(child)] for child in children]
        result = (1 + sum(v for v, _ in measured), 1 + max((d for _, d in measured), default=0))
        self._expanded[id(node)] = result
        return result


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _refusal(problem: str, mark: yaml.Mark | None) -> yaml.MarkedYAMLError:
    return yaml.composer.ComposerError(None, None, problem, mark)


KeyPath = tuple[str | int, ...]


@dataclass
class YamlDocument:
    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: KeyPath) -> int | None:
        """Line (1-based) of the deepest prefix of ``key_path`` that the document has."""
        for end in range(len(key_path), -1, -1):
            if key_path[:end] in self.lines:
                return self.lines[key_path[:end]]
        return None


def load_yaml(path: Path) -> YamlDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrtqError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrtqError(f"{path}: cannot read config: {exc}") from None
    try:
        loader = ConfigLoader(text)  # YAML's reader refuses control characters here, before parsing
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise TrtqError(
            f"{path}:{line}: invalid YAML: character {_code_point(exc.character)} is not allowed in YAML"
        ) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None  # SafeLoader's constructors
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise TrtqError(f"{where}: invalid YAML: {exc.problem}") from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _record_lines(path, node, (), lines)
    return YamlDocument(path=path, data=data, lines=lines)


def _code_point(character: int | str) -> str:
    """PyYAML reports the refused character as a code point (str input) or a byte (bytes input)."""
    return f"U+{character if isinstance(character, int) else ord(character):04X}"


def _record_lines(path: Path, node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    """Also rejects a key given twice in one mapping: YAML would silently keep the last one."""
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value)
            line = key_node.start_mark.line + 1
            if name in seen:
                raise TrtqError(f"{path}:{line}: key '{name}' appears twice (first at line {seen[name]})")
            seen[name] = line
            key = (*prefix, name)
            lines[key] = line
            _record_lines(path, value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(path, item, (*prefix, index), lines)
