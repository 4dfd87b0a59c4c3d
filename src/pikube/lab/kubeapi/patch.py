"""The three PATCH flavours of the Kubernetes API, applied to plain JSON values. Pure.

- JSON merge patch (RFC 7386): `application/merge-patch+json`.
- JSON patch (RFC 6902): `application/json-patch+json`.
- Strategic merge patch: `application/strategic-merge-patch+json`. The real server reads merge
  keys and strategies from the Go types; this stand-in uses a table of the lists kubectl and
  controllers commonly patch (containers by name, container ports by containerPort, service
  ports by port, env by name, volumes by name, volume mounts by mountPath, conditions by type,
  node addresses by type, owner references by uid, finalizers as a set, ...). Every other list
  is replaced whole, which is also what the real server does for lists without a strategy.
  The directives `$patch` (replace, delete, merge), `$retainKeys`, `$setElementOrder/<list>`
  and `$deleteFromPrimitiveList/<list>` are understood.

Inputs are never modified; results share no mutable structure with them.

Must not: know which kinds exist, or about HTTP.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied (the message says where)."""


# -- RFC 7386 -------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(copy.deepcopy(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- RFC 6902 -------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token.startswith("0") and token != "0"):
        raise PatchError(f"invalid array index {token!r} in {path!r}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of range in {path!r}")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path {path!r} does not exist")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, path, allow_end=False)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return current


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, allow_end=False)]
    raise PatchError(f"path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, allow_end=False))
    raise PatchError(f"path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise PatchError(f"path {path!r} does not exist")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for number, op in enumerate(operations):
        if not isinstance(op, Mapping) or not isinstance(op.get("op"), str):
            raise PatchError(f"operation {number}: must be an object with an 'op'")
        kind = op["op"]
        path = op.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {number} ({kind}): missing 'path'")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {number} ({kind}): missing 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {number} ({kind}): missing 'from'")
            if kind == "move":
                if path.startswith(source + "/"):
                    raise PatchError(f"operation {number}: cannot move {source!r} into itself")
                value = _remove(doc, source)
            else:
                value = copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"operation {number}: test failed at {path!r}")
        else:
            raise PatchError(f"operation {number}: unknown op {kind!r}")
    return doc


# -- strategic merge patch ------------------------------------------------------------------

# List field -> merge key, when the list's parent field is not more specific.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
}
# Lists of strings merged as sets.
_SET_LISTS = {"finalizers"}


def merge_key_for(path: Sequence[str]) -> str | None:
    """The merge key of the list at `path` (field names only), or None to replace it whole."""
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        parent = path[-2] if len(path) > 1 else ""
        if parent in ("containers", "initContainers", "ephemeralContainers"):
            return "containerPort"
        if tuple(path) == ("spec", "ports"):  # a Service's ports
            return "port"
        return None
    if name == "addresses" and tuple(path) == ("status", "addresses"):  # a Node's
        return "type"
    return _MERGE_KEYS.get(name)


_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    return _smp_value(copy.deepcopy(target), copy.deepcopy(patch), ())


def _smp_value(target: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if isinstance(patch, Mapping):
        directive = patch.get(_DIRECTIVE)
        if directive == "replace":
            return {k: v for k, v in patch.items() if k != _DIRECTIVE}
        if directive == "delete":
            return None
        if directive not in (None, "merge"):
            raise PatchError(f"unknown $patch directive {directive!r} at {'.'.join(path) or '.'}")
        return _smp_map(target if isinstance(target, dict) else {}, patch, path)
    return patch


def _smp_map(target: dict[str, Any], patch: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    result = target
    orders: dict[str, list[Any]] = {}
    deletions: dict[str, list[Any]] = {}
    retain = patch.get(_RETAIN)
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER):
            orders[key[len(_ORDER) :]] = list(value or [])
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            deletions[key[len(_DELETE_PRIMITIVE) :]] = list(value or [])
            continue
        if value is None:
            result.pop(key, None)
            continue
        child_path = (*path, key)
        if isinstance(value, list):
            merged = _smp_list(result.get(key), value, child_path)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            merged = _smp_value(result.get(key), value, child_path)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, values in deletions.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list):
            result[key] = _apply_order(result[key], order, merge_key_for((*path, key)))
    if isinstance(retain, list):
        keep = {str(k) for k in retain}
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _smp_list(target: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any] | None:
    current = target if isinstance(target, list) else []
    name = path[-1]
    if name in _SET_LISTS:
        merged = list(current)
        merged.extend(v for v in patch if v not in merged)
        return merged
    key = merge_key_for(path)
    if key is None:
        # Replace whole, but honour a lone {"$patch": "replace"} marker if present.
        return [v for v in patch if not (isinstance(v, Mapping) and v.get(_DIRECTIVE))]
    if any(isinstance(v, Mapping) and v.get(_DIRECTIVE) == "replace" for v in patch):
        return [v for v in patch if not (isinstance(v, Mapping) and _DIRECTIVE in v)]
    merged = list(current)
    for item in patch:
        if not isinstance(item, Mapping):
            raise PatchError(f"{'.'.join(path)}: expected objects with merge key {key!r}")
        if key not in item:
            raise PatchError(f"{'.'.join(path)}: an item lacks the merge key {key!r}")
        position = next(
            (
                i
                for i, old in enumerate(merged)
                if isinstance(old, Mapping) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if position is not None:
                merged.pop(position)
            continue
        if position is None:
            merged.append(_smp_value({}, item, path))
        else:
            merged[position] = _smp_value(merged[position], item, path)
    return merged


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Sort `items` so those named in `order` come in that order; the rest keep their place."""

    def identity(item: Any) -> Any:
        if key is not None and isinstance(item, Mapping):
            return item.get(key)
        return item

    wanted = [identity(o) for o in order]
    ranked = {value: rank for rank, value in enumerate(wanted) if isinstance(value, str | int)}
    in_order = sorted(
        (i for i in items if identity(i) in ranked), key=lambda i: ranked[identity(i)]
    )
    others = [i for i in items if identity(i) not in ranked]
    return in_order + others
