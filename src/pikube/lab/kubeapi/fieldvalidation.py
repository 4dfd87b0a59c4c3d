"""The `fieldValidation` query parameter, as kube-apiserver v1.31 applies it. Pure.

Strict (kubectl's default) refuses fields the kind's schema does not declare, Warn (the
server's default) returns them as warnings (`Warning: unknown field "spec.foo"`), Ignore says
nothing; the store prunes a custom resource's in every case.

A create or update is refused with 400 BadRequest: `Widget in version "v1" cannot be handled as
a Widget: strict decoding error: unknown field "spec.foo"`. A patch is refused as the real
server's patch handler refuses it: 422 Invalid with one cause on the field `patch`, whose value
is the patched object as JSON (merge and JSON patches: the real server checks the object the
patch makes) or the patch as Go prints a map (strategic merge patches, checked as sent, `$`
directives aside). kubectl shows it as `The request is invalid: patch: Invalid value: ...`.
Server-side apply is checked as a create (the real server refuses its unknown fields with a
different message: "field not declared in schema").
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Mapping
from typing import Any

from pikube.lab.kubeapi import errors, openapi, schema
from pikube.lab.kubeapi.defaults import Cause
from pikube.lab.kubeapi.patch import PatchError, json_patch, merge_patch
from pikube.lab.kubeapi.resources import ResourceType
from pikube.lab.kubeapi.store import PatchType

DIRECTIVES = ("Strict", "Warn", "Ignore")


def unknown_fields(rt: ResourceType, obj: Any, *, patch_directives: bool = False) -> list[str]:
    if rt.custom:
        return [] if rt.schema is None else schema.unknown_fields(rt.schema, obj)
    return schema.unknown_fields(
        openapi.kind_schema(rt),
        obj,
        openapi.builtin_schemas(),
        patch_directives=patch_directives,
    )


def go_value(value: Any) -> str:
    """A decoded JSON value as Go's `%+v` prints it (maps with sorted keys, numbers as float64)."""
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _go_float(float(value))
    return str(value)


def _go_float(number: float) -> str:
    """Go's %v of a float64: the shortest digits that read back the same, in exponent form
    when the exponent is below -4 or 6 and above (1e+06, 1.5e-05)."""
    if number == 0:
        return "0"
    sign, digits, exponent = decimal.Decimal(repr(number)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(str(d) for d in digits)
    exp = len(digits) + exponent - 1
    minus = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return minus + format(decimal.Decimal(repr(abs(number))).normalize(), "f")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check(
    rt: ResourceType,
    body: Any,
    directive: str | None,
    patch: PatchType | None = None,
    current: Mapping[str, Any] | None = None,
) -> list[str]:
    """The warnings to send (Warn), or ApiError (Strict); `current` is the object a patch
    applies to (None if there is none)."""
    directive = directive or "Warn"
    if directive not in DIRECTIVES:
        raise errors.bad_request(
            f"fieldValidation: {directive!r} is not one of {', '.join(DIRECTIVES)}"
        )
    if directive == "Ignore":
        return []
    checked, shown = body, None
    if patch in (PatchType.MERGE, PatchType.JSON):
        target = current
        if target is not None:
            try:
                checked = (merge_patch if patch is PatchType.MERGE else json_patch)(target, body)
            except PatchError:
                return []  # the store refuses the patch itself
            shown = _json(checked)
    elif patch is PatchType.STRATEGIC:
        shown = go_value(body)
    if not isinstance(checked, dict):
        return []
    unknown = [
        f'unknown field "{path}"'
        for path in unknown_fields(rt, checked, patch_directives=patch is PatchType.STRATEGIC)
    ]
    if not unknown or directive != "Strict":
        return unknown
    decoding = f"strict decoding error: {', '.join(unknown)}"
    if shown is not None:
        message = f"Invalid value: {json.dumps(shown, ensure_ascii=False)}: {decoding}"
        cause = Cause("patch", message, "FieldValueInvalid")
        raise errors.ApiError(422, "Invalid", f' "" is invalid: patch: {message}', causes=[cause])
    raise errors.bad_request(
        f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {decoding}'
    )
