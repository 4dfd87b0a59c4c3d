"""Label and field selectors, as list and watch requests give them. Pure.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined.
Field selectors: `path=value`, `path==value`, `path!=value`, comma-joined, over the fields the
real API server supports for each kind (metadata.name and metadata.namespace for all; a few
more for events, pods, nodes, secrets, services, namespaces and replicasets). An unsupported
field is an error, as it is for the real server.

Must not: know about HTTP or the store.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be parsed or names a field the kind does not support."""


class Op(enum.Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op is Op.EXISTS:
            return present
        if self.op is Op.NOT_EXISTS:
            return not present
        if self.op is Op.EQUALS or self.op is Op.IN:
            return present and value in self.values
        # != and notin also match objects without the label, as Kubernetes does.
        return value not in self.values


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(f"^{_KEY}$")
_VALUE_RE = re.compile(f"^{_VALUE}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parenthesis in selector {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced parenthesis in selector {text!r}")
    parts.append("".join(current))
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY_RE.match(key) or len(key) > 317:
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return LabelSelector()
    requirements = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        set_match = _SET_RE.match(part)
        if set_match:
            key = _check_key(set_match.group(1), text)
            op = Op.IN if set_match.group(2) == "in" else Op.NOT_IN
            values = tuple(
                _check_value(v.strip(), text) for v in set_match.group(3).split(",") if v.strip()
            )
            if not values:
                raise SelectorError(f"{key!r} {op.value} needs at least one value in {text!r}")
            requirements.append(Requirement(key, op, values))
            continue
        for token, op in (("!=", Op.NOT_EQUALS), ("==", Op.EQUALS), ("=", Op.EQUALS)):
            if token in part:
                key, _, value = part.partition(token)
                requirements.append(
                    Requirement(
                        _check_key(key.strip(), text), op, (_check_value(value.strip(), text),)
                    )
                )
                break
        else:
            if part.startswith("!"):
                requirements.append(Requirement(_check_key(part[1:].strip(), text), Op.NOT_EXISTS))
            else:
                requirements.append(Requirement(_check_key(part, text), Op.EXISTS))
    return LabelSelector(tuple(requirements))


def selector_from_label_selector_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector object (matchLabels, matchExpressions) as a LabelSelector."""
    if not selector:
        return LabelSelector()
    requirements = [
        Requirement(str(k), Op.EQUALS, (str(v),))
        for k, v in (selector.get("matchLabels") or {}).items()
    ]
    ops = {"In": Op.IN, "NotIn": Op.NOT_IN, "Exists": Op.EXISTS, "DoesNotExist": Op.NOT_EXISTS}
    for expr in selector.get("matchExpressions") or ():
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise SelectorError(f"unknown operator {expr.get('operator')!r} in matchExpressions")
        requirements.append(
            Requirement(str(expr.get("key")), op, tuple(str(v) for v in expr.get("values") or ()))
        )
    return LabelSelector(tuple(requirements))


# -- field selectors ------------------------------------------------------------------------

COMMON_FIELDS = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
# Per kind: selector label -> dotted path into the object.
KIND_FIELDS: dict[str, dict[str, str]] = {
    "Event": {
        "involvedObject.kind": "involvedObject.kind",
        "involvedObject.namespace": "involvedObject.namespace",
        "involvedObject.name": "involvedObject.name",
        "involvedObject.uid": "involvedObject.uid",
        "involvedObject.apiVersion": "involvedObject.apiVersion",
        "involvedObject.resourceVersion": "involvedObject.resourceVersion",
        "involvedObject.fieldPath": "involvedObject.fieldPath",
        "reason": "reason",
        "reportingComponent": "reportingComponent",
        "source": "source.component",
        "type": "type",
    },
    "Pod": {
        "spec.nodeName": "spec.nodeName",
        "spec.restartPolicy": "spec.restartPolicy",
        "spec.schedulerName": "spec.schedulerName",
        "spec.serviceAccountName": "spec.serviceAccountName",
        "spec.hostNetwork": "spec.hostNetwork",
        "status.phase": "status.phase",
        "status.podIP": "status.podIP",
        "status.nominatedNodeName": "status.nominatedNodeName",
    },
    "Node": {"spec.unschedulable": "spec.unschedulable"},
    "Secret": {"type": "type"},
    "Namespace": {"status.phase": "status.phase"},
    "Service": {"spec.clusterIP": "spec.clusterIP", "spec.type": "spec.type"},
    "ReplicaSet": {"status.replicas": "status.replicas"},
}


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    equal: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) == self.equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def exact(self, path: str) -> str | None:
        """The value `path` must equal, if the selector pins it (used to narrow lookups)."""
        for r in self.requirements:
            if r.path == path and r.equal:
                return r.value
        return None


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted path, as field selectors compare it ('' when absent)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    supported = {**COMMON_FIELDS, **KIND_FIELDS.get(kind, {})}
    requirements = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        token = next((t for t in ("!=", "==", "=") if t in part), None)
        if token is None:
            raise SelectorError(f"invalid field selector {part!r}: expected field=value")
        label, _, value = part.partition(token)
        label = label.strip()
        equal = token != "!="
        path = supported.get(label)
        if path is None:
            raise SelectorError(
                f'"{label}" is not a known field selector: only "{", ".join(sorted(supported))}"'
            )
        requirements.append(FieldRequirement(path, value.strip(), equal))
    return FieldSelector(tuple(requirements))
