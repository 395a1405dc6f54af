"""Step 2 of `manifests.parse`: one file's text -> plain documents with the line of every JSON path.

The hardened loader: libyaml's safe loader (no tags executed), nesting bounded by an iterative pre-scan before
libyaml composes anything (`_MAX_DEPTH`), aliases expanded at most `Limits.max_yaml_nodes` times per file (alias
bombs), merge keys applied, duplicate and non-string keys refused. `read_file` returns the documents and the
problems. The only module that imports PyYAML (also its writer, `dump_yaml`, for the CLI's `-o yaml`). It must
not validate against schemas or quote a scalar's value in a message (it may be a Secret's).
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import Problem
from .document import Document, JsonPath, describe, identify, json_path

_MAX_DEPTH = 64  # YAML nesting; far deeper than any manifest



_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _MAP, _SEQ, _MERGE = (_TAG + name for name in ("str", "null", "map", "seq", "merge"))
_SCALAR_TAGS = {_STR, _NULL, _TAG + "bool", _TAG + "int", _TAG + "float"}


class _YamlProblem(Exception):
    """A problem in one document; `fatal` when the rest of the file cannot be read either."""

    def __init__(self, line: int, message: str, path: JsonPath = (), fatal: bool = False) -> None:
        super().__init__(message)
        self.line, self.message, self.path, self.fatal = line, message, path, fatal


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader (its scanner takes what the pure-Python one refuses, such as a tab after a value),
    that, like Kubernetes' YAML decoder, keeps timestamp-like scalars as strings (and "=" as a string, not
    YAML's `value`). Nesting is bounded by `_check_depth` before libyaml composes (recursively) any node."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TAG + "timestamp", _TAG + "value")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_depth(text: str) -> None:
    """Raise a fatal `_YamlProblem` if the text nests deeper than `_MAX_DEPTH` (libyaml's parser is iterative,
    its composer is not). YAML errors are left to the loader that follows, which reports them the same way."""
    parser = yaml.cyaml.CParser(text)  # type: ignore[attr-defined]
    depth, line = 0, 1
    try:
        while (event := parser.get_event()) is not None:
            depth += isinstance(event, _OPENING) - isinstance(event, _CLOSING)
            line = event.start_mark.line + 1 if event.start_mark is not None else line
            if depth > _MAX_DEPTH:
                break
    except yaml.MarkedYAMLError as error:  # libyaml's scanner has a nesting limit of its own: the same problem
        if "nesting depth" not in str(error.problem):
            return
        depth = _MAX_DEPTH + 1
    except (yaml.YAMLError, yaml.reader.ReaderError):
        return
    finally:
        parser.dispose()
    if depth > _MAX_DEPTH:
        raise _YamlProblem(line, f"YAML is nested deeper than {_MAX_DEPTH} levels", fatal=True)


class _Builder:
    """Builds plain values from one file's composed YAML nodes: aliases
    expanded (and counted, against alias bombs), `<<` merge keys applied,
    duplicate keys and non-string keys rejected, the line of every path kept."""

    def __init__(self, loader: _Loader, max_nodes: int) -> None:
        self.loader = loader
        self.max_nodes = max_nodes
        self.nodes = 0  # per file
        self.lines: dict[JsonPath, int] = {}
        self.quoted: set[JsonPath] = set()  # per document: scalars not written plain (quoted, | or >)
        self.duplicates: list[tuple[JsonPath, str]] = []  # per document: (path, message), at the later key

    def document(self, node: yaml.Node) -> tuple[Any, dict[JsonPath, int]]:
        self.lines = {(): _line(node)}
        self.quoted = set()
        self.duplicates = []
        return self.value(node, (), 0), self.lines

    def visit(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            message = f"YAML expands to more than {self.max_nodes} nodes (too many aliases?)"
            raise _YamlProblem(_line(node), message, fatal=True)
        if depth > _MAX_DEPTH:
            raise _YamlProblem(_line(node), f"YAML is nested deeper than {_MAX_DEPTH} levels")

    def value(self, node: yaml.Node, path: JsonPath, depth: int) -> Any:
        self.visit(node, depth)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = _line(item)
                items.append(self.value(item, path + (index,), depth + 1))
            return items
        if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS:
            return self.scalar(node, path)
        raise _YamlProblem(_line(node), f"YAML tag {node.tag!r} is not supported", path)

    def scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        # The value is never quoted: it may be a Secret's, and the line and path already point at it.
        if node.style:
            self.quoted.add(path)
        tag = node.tag.removeprefix(_TAG)
        invalid = _YamlProblem(_line(node), f"value is not a valid {tag} (tag !!{tag})", path)
        # An explicit tag (`!!int abc`) must agree with what the value resolves to.
        resolved = self.loader.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
        if node.tag != _STR and resolved != node.tag:
            raise invalid
        try:
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except ValueError as error:  # e.g. "0b_", or more digits than Python converts
            raise invalid from error

    def mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # `<<: *base` or `<<: [*a, *b]`: explicit keys win, then earlier sources.
        for source in reversed(self.merge_sources(node, path)):
            self.visit(source, depth + 1)
            result.update(self.mapping(source, path, depth + 1))
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                raise _YamlProblem(_line(key_node), "mapping keys must be strings (quote the key)", path)
            key = key_node.value
            if key in explicit:  # reported, and the document still checked (the later value is kept)
                self.duplicates.append((path + (key,), f"duplicate key {key!r}"))
            explicit.add(key)
            self.lines[path + (key,)] = _line(key_node)
            result[key] = self.value(value_node, path + (key,), depth + 1)
        return result

    @staticmethod
    def merge_sources(node: yaml.MappingNode, path: JsonPath) -> list[yaml.MappingNode]:
        sources = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for item in items:
                if not isinstance(item, yaml.MappingNode):
                    raise _YamlProblem(_line(item), "a merge key '<<' takes a mapping or a list of mappings", path)
                sources.append(item)
        return sources


def read_file(path: str, text: str, max_nodes: int) -> tuple[list[Document], list[Problem]]:
    """The non-empty documents of one file's text (already checked by `intake.text_of`), and its YAML problems:
    aliases expanded at most `max_nodes` times, nesting at most `_MAX_DEPTH` deep."""
    documents: list[Document] = []
    problems: list[Problem] = []

    def problem(line: int, message: str, at: JsonPath = ()) -> None:
        problems.append(Problem(path, line, "", json_path(at), message))

    loader: _Loader | None = None
    try:
        _check_depth(text)
        loader = _Loader(text)
        builder = _Builder(loader, max_nodes)
        while loader.check_node():
            node = loader.get_node()
            if node is None or isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
                continue  # an empty document
            try:
                body, lines = builder.document(node)
            except _YamlProblem as error:
                problem(error.line, error.message, error.path)
                if error.fatal:
                    break
                continue
            if isinstance(body, dict):
                document = Document(path, body, lines, quoted=frozenset(builder.quoted))
                identify(document)
                for at, message in builder.duplicates:
                    document.report(at, message)
                documents.append(document)
            else:
                problem(_line(node), f"a document must be a mapping, not {describe(body)}")
    except _YamlProblem as error:
        problem(error.line, error.message, error.path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = min(mark.line + 1, text.count("\n") + 1) if mark else 1  # libyaml may mark the stream's end
        problem(line, f"invalid YAML: {error.problem or error.context}")
    except yaml.reader.ReaderError as error:
        problem(text[: error.position].count("\n") + 1, f"invalid YAML: {error.reason} (U+{error.character:04X})")
    finally:
        if loader is not None:
            loader.dispose()
    return documents, problems


def dump_yaml(data: Any) -> str:
    """JSON-shaped `data` as YAML text (the CLI's `-o yaml`): PyYAML's writer sits with its reader here."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
