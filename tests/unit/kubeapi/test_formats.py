"""String formats of CRD schemas, as kube-apiserver v1.31 (kube-openapi's registry) checks them."""

from __future__ import annotations

import pytest

from pikube.lab.kubeapi import formats, schema

VALID = {
    "ipv4": ["198.51.100.7", "010.001.002.003", "::ffff:198.51.100.7"],
    "ipv6": ["2001:db8:68::1", "::1", "::ffff:198.51.100.7"],
    "cidr": ["198.51.100.0/24", "198.51.100.7/24", "2001:db8:68::/64", "010.0.0.0/8"],
    "mac": ["02:42:ac:11:00:02", "02-42-AC-11-00-02", "0242.ac11.0002"],
    "uuid": ["123e4567-e89b-12d3-a456-426614174000", "123E4567E89B12D3A456426614174000"],
    "uuid4": ["123e4567-e89b-42d3-a456-426614174000"],
    "hostname": ["node01", "node01.lab.example", "xn--bcher-kva.example", "bücher.example"],
    "byte": ["aGVsbG8=", "aGk="],
    "date": ["2024-02-29"],
    "date-time": ["2024-02-29T12:30:00Z", "2024-02-29t12:30:00.5+01:00"],
    "datetime": ["2024-02-29T12:30:00Z"],
    "duration": ["90s", "1h30m", "0", "-1.5h", "3 days", "10 sec"],
    "hexcolor": ["#ffF", "00ff00"],
    "bsonobjectid": ["507f1f77bcf86cd799439011"],
    "int32": ["anything: a format the real server drops"],
    "uri": ["not checked by the stand-in"],
}
INVALID = {
    "ipv4": ["198.51.100.256", "2001:db8::1", "node01", "198.51.100.7/32", ""],
    "ipv6": ["198.51.100.7", "2001:db8::g", "fe80::1%eth0"],
    "cidr": ["198.51.100.0", "198.51.100.0/33", "2001:db8::/129", "x/8"],
    "mac": ["02:42:ac:11:00", "02:42:ac:11:00:02:03", "0242ac110002"],
    "uuid": ["123e4567-e89b-12d3-a456-42661417400", "not-a-uuid"],
    "uuid4": ["123e4567-e89b-12d3-a456-426614174000"],
    "hostname": ["-node", "node_01", "a." + "b" * 64 + ".example", "node01."],
    "byte": ["aGVsbG8", "", "a b="],
    "date": ["2023-02-29", "2024-2-1", "29/02/2024"],
    "date-time": ["2024-02-29", "2024-02-29T24:00:00Z", "2024-02-29T12:30:00"],
    "duration": ["", "forever", "1x"],
    "hexcolor": ["#ffff", "red"],
    "bsonobjectid": ["507f1f77bcf86cd79943901"],
}


@pytest.mark.parametrize(("fmt", "value"), [(f, v) for f, vs in VALID.items() for v in vs])
def test_values_the_real_server_accepts(fmt: str, value: str) -> None:
    assert formats.check(fmt, value)


@pytest.mark.parametrize(("fmt", "value"), [(f, v) for f, vs in INVALID.items() for v in vs])
def test_values_the_real_server_refuses(fmt: str, value: str) -> None:
    assert not formats.check(fmt, value)


def test_a_format_failure_is_worded_as_the_real_server_words_it() -> None:
    sub = {"type": "object", "properties": {"ip": {"type": "string", "format": "ipv4"}}}
    (cause,) = schema.validate(
        {"type": "object", "properties": {"spec": sub}}, {"spec": {"ip": "x"}}
    )
    assert (cause.field, cause.message, cause.reason) == (
        "spec.ip",
        'Invalid value: "x": spec.ip in body must be of type ipv4: "x"',
        "FieldValueTypeInvalid",
    )
    assert schema.validate(sub, {"ip": 7}) != []  # a type error, not a format check of a number
