"""Safe, bounded YAML parsing for manifests, and finding the line of a value. Parses bytes the
caller has read; does no file I/O itself.

Only YAML's plain data types are built (the safe loader, libyaml's C parser when available).
Beyond what the safe loader refuses (``!!python/...`` tags), this module refuses duplicate keys
(YAML says keys are unique; PyYAML silently keeps the last one) and documents whose aliases
would expand into a huge structure: PyYAML shares aliased values instead of copying them, so a
"billion laughs" document loads quickly, but anything that walks it afterwards (the schema
validator, the model builder) would run for hours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.manifest.problems import PathKey

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Collections reached through aliases, per file (anchors do not cross documents, so a manifest
# rarely has any): far below what an alias bomb needs.
MAX_ALIASES = 1000
# Nodes those aliases may add when expanded, per file.
MAX_ALIAS_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"


class YamlRefused(ConstructorError):
    """A document this loader will not build (unsafe tag, alias bomb, bad scalar)."""


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    key: object
    node: Node  # the repeated key
    first_line: int  # 1-based line of the first occurrence


class ManifestLoader(_BaseLoader):  # type: ignore[misc]
    """The safe loader plus duplicate-key detection."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.duplicates: list[DuplicateKey] = []

    # Plain strings are most of a large manifest (desktop ids): the two methods below give them
    # a short path that yields exactly what the safe loader's chain of calls does, a third
    # faster overall (0.35 -> 0.24 s for 100,000 ids).

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        """The implicit tag of a scalar, as ``Resolver.resolve`` finds it (this loader has no
        path resolvers), from candidates sorted by first character once."""
        if kind is not ScalarNode:
            return str(super().resolve(kind, value, implicit))
        if implicit[0]:
            for tag, pattern in _RESOLVERS_BY_FIRST.get(value[:1], _WILDCARD_RESOLVERS):
                if pattern.match(value):
                    return tag
        return STR_TAG

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node.__class__ is ScalarNode and node.tag == STR_TAG:
            return node.value  # what construct_yaml_str returns, without the three calls
        return super().construct_object(node, deep)

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        """SafeConstructor's mapping with duplicate keys recorded; a key a merge (``<<``) brings
        in may be overridden, a key written twice may not."""
        if not isinstance(node, MappingNode):
            found = type(node).__name__
            raise ConstructorError(None, None, f"expected a mapping node, but found {found}", node.start_mark)
        merge_keys = sum(1 for key_node, _ in node.value if key_node.tag == MERGE_TAG)
        explicit = len(node.value) - merge_keys
        self.flatten_mapping(node)
        merged = len(node.value) - explicit
        mapping: dict[Any, Any] = {}
        first: dict[Any, Node] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
                )
            if index >= merged:
                if key in first:
                    self.duplicates.append(DuplicateKey(key, key_node, first[key].start_mark.line + 1))
                first[key] = key_node
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_undefined(self, node: Node) -> Any:
        raise YamlRefused(None, None, f"unsupported YAML tag {node.tag!r}: only plain data is allowed", node.start_mark)


class AliasCountingLoader(ManifestLoader):
    """``ManifestLoader`` that also bounds what aliases expand to. Only used for files with an
    anchor (``&``) in them: the extra bookkeeping costs about 10% on every node."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.alias_count = 0
        self.alias_nodes = 0
        self._sizes: dict[Node, int] = {}

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # A collection built before and reached again is an alias (or a merge of one); aliased
        # scalars are shared strings and numbers that cost nothing to walk.
        if node in self.constructed_objects and not isinstance(node, ScalarNode):
            self._count_alias(node)
        return super().construct_object(node, deep)

    def _count_alias(self, node: Node) -> None:
        self.alias_count += 1
        if self.alias_count > MAX_ALIASES:
            raise YamlRefused(None, None, f"more than {MAX_ALIASES} aliases in one file", node.start_mark)
        self.alias_nodes += expanded_size(node, self._sizes)
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise YamlRefused(
                None, None, f"aliases expand to more than {MAX_ALIAS_NODES} values (an alias bomb?)", node.start_mark
            )


def _guarded(construct: Callable[[Any, Node], Any]) -> Callable[[Any, Node], Any]:
    """Turn the ValueError some scalars raise (a 5000-digit int, the date 2024-13-45) into a
    located problem instead of a crash."""

    def wrapper(loader: Any, node: Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as exc:
            raise YamlRefused(None, None, f"invalid value {node.value[:40]!r}: {exc}", node.start_mark) from None

    return wrapper


Resolvers = tuple[tuple[str, re.Pattern[str]], ...]
_WILDCARD_RESOLVERS: Resolvers = tuple(ManifestLoader.yaml_implicit_resolvers.get(None, ()))
_RESOLVERS_BY_FIRST: dict[str, Resolvers] = {
    first: (*resolvers, *_WILDCARD_RESOLVERS)
    for first, resolvers in ManifestLoader.yaml_implicit_resolvers.items()
    if first is not None
}

for _tag in ("int", "float", "timestamp"):
    _full_tag = f"tag:yaml.org,2002:{_tag}"
    ManifestLoader.add_constructor(_full_tag, _guarded(yaml.SafeLoader.yaml_constructors[_full_tag]))
# The constructor table holds functions, not method names: register the override for unknown tags.
ManifestLoader.add_constructor(None, ManifestLoader.construct_undefined)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_size(root: Node, sizes: dict[Node, int]) -> int:
    """How many nodes ``root`` stands for once every alias in it is expanded (memoised in
    ``sizes``; nodes hash by identity). Iterative: anchors may nest as deep as YAML does."""
    stack: list[tuple[Node, bool]] = [(root, False)]
    open_nodes: set[Node] = set()
    while stack:
        node, finished = stack.pop()
        if finished:
            open_nodes.discard(node)
            sizes[node] = 1 + sum(sizes[child] for child in _children(node))
        elif node not in sizes:
            if node in open_nodes:  # depth-first: an open node reached again contains itself
                raise YamlRefused(None, None, "recursive alias (a value that contains itself)", node.start_mark)
            open_nodes.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if child not in sizes)
    return sizes[root]


@dataclass(slots=True)
class Document:
    index: int  # position in the file, counting empty documents
    node: Node  # the composed root, for finding lines
    value: Any
    duplicates: list[DuplicateKey]


def documents(data: bytes) -> Iterator[Document]:
    """Parse ``data`` one document at a time. Raises ``yaml.YAMLError`` (``YamlRefused`` for what
    this module refuses) at the first problem that stops parsing; documents before it are kept."""
    # Without an anchor there can be no alias, so the alias bookkeeping can be skipped.
    loader = AliasCountingLoader(data) if b"&" in data else ManifestLoader(data)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            value = loader.construct_document(node)
            yield Document(index, node, value, loader.duplicates)
            loader.duplicates = []
            index += 1
    finally:
        loader.dispose()


def compose(data: bytes) -> list[Node]:
    """The node trees of every document that parses (for finding lines after the fact)."""
    nodes: list[Node] = []
    loader = _BaseLoader(data)
    try:
        while loader.check_node():
            nodes.append(loader.get_node())
    except yaml.YAMLError:
        pass  # the parse error itself is reported separately
    finally:
        loader.dispose()
    return nodes


# --- from a path in the data to a line in the file -------------------------------------------

def _child(node: Node, part: object) -> tuple[Node | None, Node] | None:
    """The (key node, value node) that ``part`` leads to, following merge keys."""
    if isinstance(node, SequenceNode):
        if isinstance(part, int) and 0 <= part < len(node.value):
            return None, node.value[part]
        return None
    if not isinstance(node, MappingNode):
        return None
    for key_node, value_node in reversed(node.value):  # the last of repeated keys wins
        if isinstance(key_node, ScalarNode) and key_node.tag != MERGE_TAG and key_node.value == str(part):
            return key_node, value_node
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            for source in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                found = _child(source, part)
                if found is not None:
                    return found
    return None


def find_node(root: Node, path: PathKey, key: bool = False) -> Node:
    """The node at ``path`` or, when the path goes further than the document, the deepest node
    on it. With ``key``, or when the value is a mapping or list, its key (where a reader looks)."""
    node, key_node = root, None
    for part in path:
        found = _child(node, part)
        if found is None:
            return node
        key_node, node = found
    if key_node is not None and (key or not isinstance(node, ScalarNode)):
        return key_node
    return node


def position(node: Node) -> tuple[int, int]:
    """1-based (line, column) where ``node`` starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def path_of(root: Node, target: Node) -> PathKey | None:
    """The path from ``root`` to the mapping that holds key node ``target`` (error paths only)."""
    stack: list[tuple[Node, PathKey]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if key_node is target:
                    return path
                stack.append((value_node, path + (getattr(key_node, "value", "?"),)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, path + (index,)) for index, item in enumerate(node.value))
    return None
