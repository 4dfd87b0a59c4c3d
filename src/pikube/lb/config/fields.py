"""The generic part of reading manifests: where a value came from, errors that say so,
a field reader that names every field it rejects, object metadata and addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from pikube.errors import PikubeError
from pikube.lb.config.constants import _REJECTED
from pikube.lb.model import (
    AddressRange,
    IPAddress,
    LabelSelector,
    LabelSelectorRequirement,
    SelectorOperator,
)

# --- where things come from, and errors -----------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a document came from: a file (or any source name) and its document number,
    counted from 1 like line numbers; `item` is the position inside a `kind: List`."""

    path: str
    index: int
    item: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}, document {self.index}"
        return where if self.item is None else f"{where}, items[{self.item}]"


class ConfigError(PikubeError):
    """Invalid input: names the file, document, object and field. The CLI exits with 2."""

    exit_code = 2

    def __init__(
        self,
        problem: str,
        *,
        origin: Origin | str | None = None,
        obj: str | None = None,
        field: str | None = None,
    ) -> None:
        parts = [str(p) for p in (origin, obj, field) if p]
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(": ".join([*parts, problem]).split()))
        self.origin = origin
        self.obj = obj
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class _Where:
    origin: Origin
    obj: str  # e.g. "IPAddressPool 'default'"


class _Fields:
    """A mapping being read. It knows where it is, so every error names its field."""

    def __init__(self, data: Mapping[str, object], where: _Where, path: str) -> None:
        self.data = data
        self.where = where
        self.path = path

    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | int | None, problem: str) -> NoReturn:
        raise ConfigError(
            problem,
            origin=self.where.origin,
            obj=self.where.obj,
            field=self.path if key is None else self.at(key),
        )

    def get(self, key: str) -> object:
        # null means unset, as in Kubernetes.
        return self.data.get(key)

    def check_keys(self, kind: str, supported: Iterable[str]) -> None:
        allowed = set(supported)
        for key in self.data:
            if (kind, str(key)) in _REJECTED:
                self.fail(str(key), _REJECTED[kind, str(key)])
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(str(key), f"unknown field (known fields here: {known})")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return None
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        if required and not value:
            self.fail(key, "must not be empty")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def optional_boolean(self, key: str) -> bool | None:
        value = self.get(key)
        if value is None:
            return None
        return self.boolean(key, False)

    def integer(self, key: str, minimum: int, maximum: int) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected a whole number, got {_describe(value)}")
        if not minimum <= value <= maximum:
            self.fail(key, f"{value} is out of range ({minimum} to {maximum})")
        return value

    def mapping(self, key: str) -> _Fields | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {_describe(value)}")
        return _Fields(value, self.where, self.at(key))

    def items(self, key: str) -> list[tuple[str, object]]:
        """The entries of a list field, each with its own field path."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {_describe(value)}")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def mappings(self, key: str) -> list[_Fields]:
        out = []
        for path, item in self.items(key):
            if not isinstance(item, dict):
                raise ConfigError(
                    f"expected a mapping, got {_describe(item)}",
                    origin=self.where.origin,
                    obj=self.where.obj,
                    field=path,
                )
            out.append(_Fields(item, self.where, path))
        return out

    def strings(self, key: str, *, unique: bool = True) -> tuple[str, ...]:
        out: list[str] = []
        for path, item in self.items(key):
            problem = None
            if not isinstance(item, str):
                problem = f"expected a string, got {_describe(item)}"
            elif not item:
                problem = "must not be empty"
            elif unique and item in out:
                problem = f"{item!r} is listed twice"
            if problem is not None:
                raise ConfigError(problem, origin=self.where.origin, obj=self.where.obj, field=path)
            assert isinstance(item, str)
            out.append(item)
        return tuple(out)

    def string_map(self, key: str) -> dict[str, str]:
        """Labels, annotations, selectors: string keys and string values."""
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping of strings, got {_describe(value)}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(key, f"key {k!r} must be a string")
            if v is None:
                out[k] = ""
                continue
            if not isinstance(v, str):
                self.fail(f"{key}.{k}", f'must be a string (quote it: "{_yaml_text(v)}")')
            out[k] = v
        return out

    def selectors(self, key: str) -> tuple[LabelSelector, ...]:
        parsed: list[LabelSelector] = []
        for item in self.mappings(key):
            selector = _label_selector(item)
            if selector in parsed:
                item.fail(None, "the same selector is listed twice")
            parsed.append(selector)
        return tuple(parsed)


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{type(value).__name__} {value!r}"


def _yaml_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _label_selector(fields: _Fields) -> LabelSelector:
    fields.check_keys("LabelSelector", ("matchLabels", "matchExpressions"))
    labels = fields.string_map("matchLabels")
    expressions: list[LabelSelectorRequirement] = []
    for expr in fields.mappings("matchExpressions"):
        expr.check_keys("LabelSelectorRequirement", ("key", "operator", "values"))
        key = expr.required_string("key")
        op_text = expr.required_string("operator")
        try:
            operator = SelectorOperator(op_text)
        except ValueError:
            names = ", ".join(o.value for o in SelectorOperator)
            expr.fail("operator", f"unknown operator {op_text!r} (use one of {names})")
        values = expr.strings("values")
        if operator in (SelectorOperator.IN, SelectorOperator.NOT_IN) and not values:
            expr.fail("values", f"operator {operator.value} needs at least one value")
        if operator in (SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST) and values:
            expr.fail("values", f"operator {operator.value} takes no values")
        requirement = LabelSelectorRequirement(key, operator, tuple(sorted(values)))
        if requirement in expressions:
            expr.fail(None, "the same expression is listed twice")
        expressions.append(requirement)
    return LabelSelector(labels, tuple(expressions))


# --- object metadata ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    name: str
    namespace: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    creation_timestamp: datetime | None


def _metadata(doc: _Fields, kind: str, *, namespaced: bool) -> tuple[_Meta, _Where]:
    where = _Where(doc.where.origin, kind)
    meta = doc.mapping("metadata")
    if meta is None:
        raise ConfigError("metadata.name is required", origin=where.origin, obj=kind)
    meta = _Fields(meta.data, where, "metadata")
    name = meta.required_string("name")
    namespace = meta.string("namespace") if namespaced else None
    shown = f"{namespace or 'default'}/{name}" if namespaced else name
    where = _Where(doc.where.origin, f"{kind} {shown!r}")
    meta = _Fields(meta.data, where, "metadata")
    stamp = meta.get("creationTimestamp")
    created: datetime | None
    if stamp is None:
        created = None
    elif isinstance(stamp, datetime):
        created = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    elif isinstance(stamp, str):
        try:
            created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            meta.fail("creationTimestamp", f"{stamp!r} is not an RFC 3339 time")
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
    else:
        meta.fail("creationTimestamp", f"expected a time, got {_describe(stamp)}")
    return (
        _Meta(
            name=name,
            namespace=namespace,
            labels=meta.string_map("labels"),
            annotations=meta.string_map("annotations"),
            creation_timestamp=created,
        ),
        where,
    )


def _spec(doc: _Fields, where: _Where) -> _Fields:
    spec = _Fields(doc.data, where, "").mapping("spec")
    return spec if spec is not None else _Fields({}, where, "spec")


# --- addresses ------------------------------------------------------------------------------------


def parse_address_range(text: str) -> AddressRange:
    """`10.0.0.0/24`, `10.0.0.10-10.0.0.20` or `fd00::/120` -> AddressRange; ValueError says why."""
    text = text.strip()
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        try:
            first = ipaddress.ip_address(first_text.strip())
            last = ipaddress.ip_address(last_text.strip())
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid address range: {exc}") from None
        if first.version != last.version:
            raise ValueError(f"range {text!r} mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise ValueError(f"range {text!r} ends before it starts")
        return AddressRange(first, last)
    if "/" not in text:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a CIDR nor a range like a.b.c.d-e.f.g.h"
            ) from None
        raise ValueError(f"{text!r} is a single address; write it as {ip}/{ip.max_prefixlen}")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid CIDR: {exc}") from None
    address = ipaddress.ip_address(text.partition("/")[0])
    if address != network.network_address:
        raise ValueError(
            f"CIDR {text!r} has host bits set: write {network} for the whole network, "
            f"or {address}-{network.broadcast_address} for a range"
        )
    return AddressRange(network.network_address, network.broadcast_address)


def _widest_prefix(rng: AddressRange) -> int:
    """The shortest prefix length among the CIDRs that exactly cover `rng`."""
    return min(n.prefixlen for n in ipaddress.summarize_address_range(rng.first, rng.last))


def _ip(fields: _Fields, key: str) -> IPAddress | None:
    text = fields.string(key)
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        fields.fail(key, f"{text!r} is not an IP address")
