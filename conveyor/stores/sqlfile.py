"""Parse a queries.sql file of named blocks (`-- name: claim`) into a read-only mapping."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_BLOCK = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{\{(\w+)\}\}")
_COMMENT_OR_BLANK = re.compile(r"^\s*(--.*)?$")
_MAX_NESTING = 3  # fragments may include fragments, this deep (and so never in a cycle)


def parse(text: str) -> Mapping[str, str]:
    """Each block runs from its `-- name:` line to the next. Comment lines, blank lines and
    indentation are for readers of the file and are left out of the statement: drivers cache
    a parsed statement only up to a size (psycopg: 4 KiB), and the comments doubled the
    longest. `{{name}}` in a block is replaced by block `name` (a fragment shared by
    statements, which may include fragments in turn)."""
    parts = _BLOCK.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} defined twice")
        lines = [line.lstrip() for line in body.splitlines() if not _COMMENT_OR_BLANK.match(line)]
        queries[name] = "\n".join(lines).strip().rstrip(";")

    def expand(body: str, depth: int = 0) -> str:
        def include(match: re.Match[str]) -> str:
            fragment = queries.get(match.group(1))
            if fragment is None or depth >= _MAX_NESTING:
                raise ValueError(f"unknown or too deeply nested fragment {match.group(0)}")
            return expand(fragment, depth + 1)

        return _INCLUDE.sub(include, body)

    return MappingProxyType({name: expand(body) for name, body in queries.items()})


def load(package: str, filename: str = "queries.sql") -> Mapping[str, str]:
    return parse(resources.files(package).joinpath(filename).read_text(encoding="utf-8"))


def migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every `NNNN_name.sql` in package/migrations, in order."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations of {package} are not numbered 1..n: {versions}")
    return found
