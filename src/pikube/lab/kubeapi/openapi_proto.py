"""The OpenAPI v2 document in the protobuf form kubectl asks for. Pure.

client-go fetches /openapi/v2 only as protobuf (`Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): the message `openapi.v2.Document`
of the gnostic project. This module writes the part of it an API server's document uses (info,
definitions and their schemas, vendor extensions) with a small hand-written protobuf writer:
the whole format needed is varints and length-delimited fields, which does not justify a
protobuf runtime and generated code in the lab's API stand-in.

Field numbers are gnostic's (openapiv2/OpenAPIv2.proto). Vendor extensions and enum or default
values are `Any` messages holding YAML text (JSON is YAML). Must not: do I/O.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

# What the real server answers with (Go's MIME parser refuses the "@" of the Accept form).
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

# openapi.v2.Schema
_SCHEMA_STRINGS = {"$ref": 1, "format": 2, "title": 3, "description": 4, "pattern": 13}
_SCHEMA_DOUBLES = {"multipleOf": 6, "maximum": 7, "minimum": 9}
_SCHEMA_BOOLS = {"exclusiveMaximum": 8, "exclusiveMinimum": 10, "uniqueItems": 16, "readOnly": 27}
_SCHEMA_INTS = {
    "maxLength": 11,
    "minLength": 12,
    "maxItems": 14,
    "minItems": 15,
    "maxProperties": 17,
    "minProperties": 18,
}


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64s take ten bytes, as protobuf writes them
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _string(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _any(field: int, value: Any) -> bytes:
    return _bytes(field, _string(2, json.dumps(value)))  # openapi.v2.Any.yaml = 2


def schema(value: Mapping[str, Any]) -> bytes:
    """An openapi.v2.Schema."""
    out = bytearray()
    for key, item in value.items():
        if key in _SCHEMA_STRINGS and isinstance(item, str):
            out += _string(_SCHEMA_STRINGS[key], item)
        elif key in _SCHEMA_DOUBLES and isinstance(item, int | float):
            out += _key(_SCHEMA_DOUBLES[key], 1) + struct.pack("<d", float(item))
        elif key in _SCHEMA_BOOLS and isinstance(item, bool):
            out += _key(_SCHEMA_BOOLS[key], 0) + _varint(int(item))
        elif key in _SCHEMA_INTS and isinstance(item, int):
            out += _key(_SCHEMA_INTS[key], 0) + _varint(item)
        elif key == "default":
            out += _any(5, item)
        elif key == "required" and isinstance(item, list):
            out += b"".join(_string(19, str(name)) for name in item)
        elif key == "enum" and isinstance(item, list):
            out += b"".join(_any(20, choice) for choice in item)
        elif key == "additionalProperties":
            if isinstance(item, Mapping):
                out += _bytes(21, _bytes(1, schema(item)))
            elif isinstance(item, bool):
                out += _bytes(21, _key(2, 0) + _varint(int(item)))
        elif key == "type":
            types = item if isinstance(item, list) else [item]
            out += _bytes(22, b"".join(_string(1, str(t)) for t in types))
        elif key == "items" and isinstance(item, Mapping):
            out += _bytes(23, _bytes(1, schema(item)))
        elif key == "allOf" and isinstance(item, list):
            out += b"".join(_bytes(24, schema(s)) for s in item if isinstance(s, Mapping))
        elif key == "properties" and isinstance(item, Mapping):
            out += _bytes(25, _named_schemas(item))
        elif key.startswith("x-"):
            out += _bytes(31, _string(1, key) + _any(2, item))
    return bytes(out)


def _named_schemas(schemas: Mapping[str, Any]) -> bytes:
    """The additional_properties (1) of Properties or Definitions: NamedSchema{name, value}."""
    return b"".join(
        _bytes(1, _string(1, name) + _bytes(2, schema(value)))
        for name, value in schemas.items()
        if isinstance(value, Mapping)
    )


def document(swagger: Mapping[str, Any]) -> bytes:
    """An openapi.v2.Document from a Swagger 2.0 document (info and definitions; paths are
    not needed by the clients that read this form)."""
    info = swagger.get("info") or {}
    out = bytearray(_string(1, str(swagger.get("swagger", "2.0"))))
    out += _bytes(
        2, _string(1, str(info.get("title", ""))) + _string(2, str(info.get("version", "")))
    )
    out += _bytes(9, _named_schemas(swagger.get("definitions") or {}))
    return bytes(out)
