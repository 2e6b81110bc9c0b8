"""YAML loading that remembers the line of every key, so validation errors can name file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader whose floats also accept YAML 1.2 exponents (4e-3)."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

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
        node = yaml.compose(text, Loader=ConfigLoader)
        data = yaml.load(text, Loader=ConfigLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise TrtqError(f"{where}: invalid YAML: {exc.problem}") from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _record_lines(path, node, (), lines)
    return YamlDocument(path=path, data=data, lines=lines)


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
