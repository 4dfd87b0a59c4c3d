"""The adapter: files and directories of YAML -> documents, each with its origin."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from pikube.inputs import MANIFESTS_LIMIT_BYTES, InputBudget
from pikube.lb.config.documents import parse_documents
from pikube.lb.config.fields import ConfigError, Origin
from pikube.lb.model import (
    ClusterResources,
)

# --- the adapter: files and directories -> documents ----------------------------------------------


def _manifest_loader() -> type[yaml.SafeLoader]:
    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class ManifestLoader(base):  # type: ignore[valid-type,misc]
        """YAML as Kubernetes reads it: `1234:1` stays a string (YAML 1.1 would read a
        base-60 number, and every unquoted BGP community would silently change), and a key
        written twice in one mapping is an error, not a silent override."""

        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[object, object]:
            keys: set[object] = set()
            for key_node, _ in node.value:
                if (
                    isinstance(key_node, yaml.ScalarNode)
                    and key_node.tag != "tag:yaml.org,2002:merge"
                ):
                    key = self.construct_object(key_node, deep=deep)
                    if key in keys:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} is written twice", key_node.start_mark
                        )
                    keys.add(key)
            return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in base.yaml_implicit_resolvers.items():
        kept = []
        for tag, pattern in entries:
            if tag.endswith((":int", ":float")):
                kept.append((tag, re.compile(r"(?!.*:)" + pattern.pattern, pattern.flags)))
            else:
                kept.append((tag, pattern))
        resolvers[first] = kept
    ManifestLoader.yaml_implicit_resolvers = resolvers
    return ManifestLoader


_LOADER = _manifest_loader()


def documents_from_text(text: str, path: str) -> list[tuple[object, Origin]]:
    """The YAML documents in `text`, each with its origin; a syntax error is a ConfigError."""
    docs: list[tuple[object, Origin]] = []
    try:
        for doc in yaml.load_all(text, Loader=_LOADER):  # a safe loader
            docs.append((doc, Origin(path, len(docs) + 1)))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid YAML{where}: {problem}", origin=Origin(path, len(docs) + 1)
        ) from None
    return docs


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files given, and *.yaml/*.yml in directories given (sorted, not recursive, no dotfiles)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    f
                    for f in path.iterdir()
                    if f.suffix in (".yaml", ".yml") and f.is_file() and not f.name.startswith(".")
                )
            )
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError("no such file or directory", origin=str(raw))
    return files


def read_documents(paths: Iterable[str | Path]) -> list[tuple[object, Origin]]:
    """Every YAML document of the given files and directories, with its origin. `-` is stdin.
    Every file is read (within the size limit) before any is parsed, so an input over the
    limit is refused before parsing costs anything."""
    texts: list[tuple[str, str]] = []
    budget = InputBudget(MANIFESTS_LIMIT_BYTES, "manifests")
    for raw in paths:
        if str(raw) == "-":
            texts.append((budget.read_stdin(), "<stdin>"))
            continue
        for path in manifest_files([raw]):
            try:
                texts.append((budget.read_text(path), str(path)))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"cannot read it: {reason}", origin=str(path)) from None
    return [doc for text, origin in texts for doc in documents_from_text(text, origin)]


def load_manifests(paths: Iterable[str | Path]) -> ClusterResources:
    """Read files (multi-document YAML) and directories (*.yaml, *.yml) and parse them."""
    return parse_documents(read_documents(paths))
