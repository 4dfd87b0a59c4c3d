"""Custom resources against their CRD's structural schema, as kube-apiserver checks them. Pure.

- `validate`: the value checks of OpenAPI v3 that CRD authors use (type, nullable, enum,
  required, minimum/maximum, exclusive bounds, minLength/maxLength, pattern, minItems/maxItems,
  uniqueItems, minProperties/maxProperties, x-kubernetes-int-or-string, string formats as
  formats.py checks them), each failure a `Cause` worded like the real server's
  ("spec.addresses: Invalid value: "string": spec.addresses in body must be of type array:
  "string"") and returned as 422 Invalid. A null the schema does not allow is pruned, not
  refused.
- `unknown_fields`: the fields the schema does not declare (the real server's strict field
  validation refuses them with 400 "strict decoding error: unknown field ..."; Warn and Ignore
  prune them, as `prune` does). It also serves the built-in kinds, whose schemas refer to each
  other by `$ref`.
- `prune`: drops the undeclared fields in place, as the real server prunes every custom
  resource with a structural schema.

`x-kubernetes-preserve-unknown-fields` stops the unknown-field check and pruning below it;
`additionalProperties` declares a map. apiVersion, kind and metadata are the server's, not the
schema's, and are not looked at here. Must not: do I/O or know about HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pikube.lab.kubeapi import formats
from pikube.lab.kubeapi.defaults import Cause

_SERVER_FIELDS = ("apiVersion", "kind", "metadata")
_TYPES = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _has_type(value: Any, wanted: str) -> bool:
    if wanted == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES.get(wanted, (object,)))


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, dict | list) else f'"{_type_name(value)}"'
    return text if len(text) <= 60 else text[:57] + '..."'


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _children(
    schema: Mapping[str, Any], value: Any, path: str
) -> Iterator[tuple[Mapping[str, Any] | None, Any, str, str]]:
    """(schema of the child or None if undeclared, child value, child path, key)."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            sub = properties.get(key) if isinstance(properties, Mapping) else None
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is None and extra is True:
                sub = {"x-kubernetes-preserve-unknown-fields": True}
            yield sub, child, _join(path, str(key)), str(key)
    elif isinstance(value, list):
        items = schema.get("items")
        for index, child in enumerate(value):
            yield (items if isinstance(items, Mapping) else {}), child, f"{path}[{index}]", ""


def _top(
    schema: Mapping[str, Any], value: Any
) -> Iterator[tuple[Mapping[str, Any] | None, Any, str]]:
    """The top-level fields the schema governs (all but apiVersion, kind, metadata)."""
    if not isinstance(value, dict):
        return
    properties = schema.get("properties") or {}
    for key, child in value.items():
        if key in _SERVER_FIELDS:
            continue
        yield properties.get(key), child, key


def _resolve(sub: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    """A schema that is a reference (`$ref`, or an `allOf` of one) as what it refers to."""
    for _ in range(8):
        ref = sub.get("$ref")
        if ref is None and len(sub.get("allOf") or ()) == 1:
            ref = sub["allOf"][0].get("$ref")
        if not isinstance(ref, str):
            return sub
        target = definitions.get(ref.rsplit("/", 1)[-1])
        if not isinstance(target, Mapping):
            return {"x-kubernetes-preserve-unknown-fields": True}  # unknown: check nothing
        sub = target
    return sub


def unknown_fields(
    schema: Mapping[str, Any],
    obj: Any,
    definitions: Mapping[str, Any] | None = None,
    *,
    patch_directives: bool = False,
) -> list[str]:
    """Paths of the fields `obj` has and the schema does not declare, e.g. `spec.adresses`.

    `definitions` resolves `$ref`s: the built-in kinds' schemas refer to each other, and in
    them a schema that declares neither properties nor additionalProperties takes anything
    (RawExtension, JSONSchemaPropsOrArray), where a CRD's structural schema would prune all.
    `patch_directives` skips the `$patch`, `$setElementOrder/...` keys of a strategic merge
    patch, which are instructions, not fields."""
    found: list[str] = []
    refs = definitions or {}

    def walk(sub: Mapping[str, Any], value: Any, path: str) -> None:
        sub = _resolve(sub, refs)
        if sub.get("x-kubernetes-preserve-unknown-fields"):
            return
        open_schema = "properties" not in sub and "additionalProperties" not in sub
        if definitions is not None and isinstance(value, dict) and open_schema:
            return
        for child_schema, child, child_path, key in _children(sub, value, path):
            if patch_directives and key.startswith("$"):
                continue
            if child_schema is None:
                found.append(child_path)
            else:
                walk(child_schema, child, child_path)

    for sub, value, key in _top(schema, obj):
        if patch_directives and key.startswith("$"):
            continue
        if sub is None:
            if not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(key)
        else:
            walk(sub, value, key)
    return found


def prune(schema: Mapping[str, Any], obj: Any) -> None:
    """Drop, in place, every field the schema does not declare."""

    def walk(sub: Mapping[str, Any], value: Any, path: str) -> None:
        if sub.get("x-kubernetes-preserve-unknown-fields"):
            return
        for child_schema, child, child_path, key in list(_children(sub, value, path)):
            if child_schema is None or (child is None and key and not child_schema.get("nullable")):
                del value[key]
            else:
                walk(child_schema, child, child_path)

    if not isinstance(obj, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    for sub, value, key in list(_top(schema, obj)):
        if sub is None:
            del obj[key]
        else:
            walk(sub, value, key)


def validate(schema: Mapping[str, Any], obj: Any) -> list[Cause]:
    """The schema's value checks; undeclared fields are not looked at (see unknown_fields)."""
    causes: list[Cause] = []

    def fail(path: str, value: Any, what: str, reason: str = "FieldValueInvalid") -> None:
        message = f"Invalid value: {_shown(value)}: {path} in body {what}"
        causes.append(Cause(path, message, reason))

    def wrong_type(path: str, value: Any, wanted: str) -> None:
        # The real server shows the value's type, not the value, for a type error.
        name = _type_name(value)
        message = f'Invalid value: "{name}": {path} in body must be of type {wanted}: "{name}"'
        causes.append(Cause(path, message, "FieldValueTypeInvalid"))

    def too_many(path: str, size: int, most: int) -> None:
        message = f"Too many: {size}: must have at most {most} items"
        causes.append(Cause(path, message, "FieldValueTooMany"))

    def number(sub: Mapping[str, Any], value: float, path: str) -> None:
        if "minimum" in sub:
            low = sub["minimum"]
            if sub.get("exclusiveMinimum") and value <= low:
                fail(path, value, f"should be greater than {low}")
            elif value < low:
                fail(path, value, f"should be greater than or equal to {low}")
        if "maximum" in sub:
            high = sub["maximum"]
            if sub.get("exclusiveMaximum") and value >= high:
                fail(path, value, f"should be less than {high}")
            elif value > high:
                fail(path, value, f"should be less than or equal to {high}")

    def string(sub: Mapping[str, Any], value: str, path: str) -> None:
        if "maxLength" in sub and len(value) > sub["maxLength"]:
            message = f"Too long: may not be longer than {sub['maxLength']}"
            causes.append(Cause(path, message, "FieldValueTooLong"))
        if "minLength" in sub and len(value) < sub["minLength"]:
            fail(path, value, f"should be at least {sub['minLength']} chars long")
        if "pattern" in sub and not re.search(str(sub["pattern"]), value):
            fail(path, value, f"should match '{sub['pattern']}'")
        fmt = sub.get("format")
        if isinstance(fmt, str) and not formats.check(fmt, value):
            fail(path, value, f"must be of type {fmt}: {_shown(value)}", "FieldValueTypeInvalid")

    def children(sub: Mapping[str, Any], value: Any, path: str) -> None:
        for child_schema, child, child_path, _key in _children(sub, value, path):
            if child_schema is not None:
                walk(child_schema, child, child_path)

    def walk(sub: Mapping[str, Any], value: Any, path: str) -> None:
        # kube-openapi's order: type, string, format, number, array (items first), enum, object
        # (properties first, then required): several causes come out in the real server's order.
        if value is None:
            return  # a null where the schema allows none is pruned, as the real server does
        if sub.get("x-kubernetes-int-or-string"):
            if not (_has_type(value, "integer") or isinstance(value, str)):
                wrong_type(path, value, "integer,string")
                return
        elif "type" in sub and not _has_type(value, str(sub["type"])):
            wrong_type(path, value, str(sub["type"]))
            return
        if isinstance(value, str):
            string(sub, value, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            number(sub, value, path)
        if isinstance(value, list):
            children(sub, value, path)
            if "minItems" in sub and len(value) < sub["minItems"]:
                fail(path, len(value), f"should have at least {sub['minItems']} items")
            if "maxItems" in sub and len(value) > sub["maxItems"]:
                too_many(path, len(value), sub["maxItems"])
            if sub.get("uniqueItems"):
                seen = [json.dumps(v, sort_keys=True) for v in value]
                if len(set(seen)) != len(seen):
                    fail(path, "", "shouldn't contain duplicates", "FieldValueDuplicate")
        if "enum" in sub and value not in sub["enum"]:
            allowed = ", ".join(json.dumps(v) for v in sub["enum"])
            message = f"Unsupported value: {_shown(value)}: supported values: {allowed}"
            causes.append(Cause(path, message, "FieldValueNotSupported"))
        if isinstance(value, dict):
            if "minProperties" in sub and len(value) < sub["minProperties"]:
                fail(path, len(value), f"should have at least {sub['minProperties']} properties")
            if "maxProperties" in sub and len(value) > sub["maxProperties"]:
                too_many(path, len(value), sub["maxProperties"])
            children(sub, value, path)
            for key in sub.get("required") or ():
                if key not in value:
                    causes.append(
                        Cause(_join(path, str(key)), "Required value", "FieldValueRequired")
                    )

    if isinstance(obj, dict):
        for key in schema.get("required") or ():
            if key not in obj and key not in _SERVER_FIELDS:
                causes.append(Cause(key, "Required value", "FieldValueRequired"))
    for sub, value, key in _top(schema, obj):
        if sub is not None:
            walk(sub, value, key)
    return causes
