"""String formats of a CRD's schema, checked as kube-apiserver v1.31 checks them. Pure.

The real server keeps only the formats of its list (apiextensions' supportedFormats: `int32`,
`int64`, `float` and any unknown name are dropped, so never checked) and checks a string
against the rule of kube-openapi's format registry, with `-` ignored in the name (`date-time`
is `datetime`). A failure is worded "PATH in body must be of type FORMAT: "VALUE"", FORMAT as
the schema writes it.

Checked here as the real server checks them: ipv4, ipv6, cidr (Go's sloppy parsers: leading
zeros allowed, host bits allowed), mac (Go's net.ParseMAC), uuid, uuid3, uuid4, uuid5,
hostname, byte (standard base64), date, datetime, duration (Go's durations and the "3 days"
style), hexcolor, bsonobjectid, password (anything). Accepted unchecked (the real server
checks them; the stand-in does not, yet): uri, email, isbn, isbn10, isbn13, creditcard, ssn,
rgbcolor.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import unicodedata
from collections.abc import Callable

_UUID = {
    "uuid": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
    "uuid3": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
    "uuid4": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
    "uuid5": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
}
# kube-openapi's hostname rule, with its letter class (ASCII letters and digits, Unicode
# letters and symbols) reached by mapping letters to "a" and symbols to "0" first.
_HOSTNAME = re.compile(
    r"^([a-zA-Z0-9]((-?[a-zA-Z0-9]{0,62})?)|"
    r"([a-zA-Z0-9](([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.)){1,}([a-zA-Z]){2,63})$"
)
_BASE64 = re.compile(
    r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
)
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
_GO_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
_SCALA_DURATION = re.compile(r"((\d+)\s*([A-Za-zµ]+))")
_UNITS = (
    ("ns", "nano"),
    ("us", "µs", "micro"),
    ("ms", "milli"),
    ("s", "sec"),
    ("m", "min"),
    ("h", "hr", "hour"),
    ("d", "day"),
    ("w", "wk", "week"),
)
_MAC = (
    re.compile(
        r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}(([:][0-9a-fA-F]{2}){2}|(:[0-9a-fA-F]{2}){14})?$"
    ),
    re.compile(
        r"^[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}((-[0-9a-fA-F]{2}){2}|(-[0-9a-fA-F]{2}){14})?$"
    ),
    re.compile(
        r"^[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4}){2}((\.[0-9a-fA-F]{4}){1}|(\.[0-9a-fA-F]{4}){7})?$"
    ),
)


def _ipv4_sloppy(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts)


def _ip(text: str) -> bool:
    """Go's netutils.ParseIPSloppy: dotted IPv4 with leading zeros, or IPv6 (no zone)."""
    if _ipv4_sloppy(text):
        return True
    if "%" in text or ":" not in text:
        return False
    head, _, tail = text.rpartition(":")
    if "." in tail:  # an IPv6 address ending in dotted IPv4
        if not _ipv4_sloppy(tail):
            return False
        text = f"{head}:{'.'.join(str(int(p)) for p in tail.split('.'))}"
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _cidr(text: str) -> bool:
    address, slash, prefix = text.partition("/")
    if not slash or not prefix.isascii() or not prefix.isdigit() or not _ip(address):
        return False
    return int(prefix) <= (32 if _ipv4_sloppy(address) else 128)


def _hostname(text: str) -> bool:
    def mapped(char: str) -> str:
        if char.isascii():
            return char
        category = unicodedata.category(char)
        return "a" if category.startswith("L") else "0" if category.startswith("S") else "!"

    if not _HOSTNAME.match("".join(mapped(c) for c in text)):
        return False
    encoded = text.encode()
    return len(encoded) <= 255 and all(len(label) <= 63 for label in encoded.split(b"."))


def _date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _datetime(text: str) -> bool:
    if len(text) < 4:
        return False
    parts = text.lower().split("t")
    if len(parts) < 2 or not _date(parts[0]):
        return False
    match = _TIME.search(parts[1])
    if match is None:
        return False
    return match[1] <= "23" and match[2] <= "59" and match[3] <= "59"


def _duration(text: str) -> bool:
    if _GO_DURATION.match(text):
        return True
    for match in _SCALA_DURATION.finditer(text):
        unit = match[3].strip().lower()
        for variants in _UNITS:
            last = len(variants) - 1
            for index, variant in enumerate(variants):
                if (index == last and unit.startswith(variant)) or variant == unit:
                    return True
    return False


def _matches(pattern: str | re.Pattern[str]) -> Callable[[str], bool]:
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    return lambda text: compiled.search(text) is not None


CHECKS: dict[str, Callable[[str], bool]] = {
    "ipv4": lambda text: _ip(text) and "." in text,
    "ipv6": lambda text: _ip(text) and ":" in text,
    "cidr": _cidr,
    "mac": lambda text: any(p.match(text) for p in _MAC),
    **{name: _matches(pattern) for name, pattern in _UUID.items()},
    "hostname": _hostname,
    "byte": _matches(_BASE64),
    "date": _date,
    "datetime": _datetime,
    "duration": _duration,
    "hexcolor": _matches(_HEXCOLOR),
    "bsonobjectid": _matches(r"^[0-9a-fA-F]{24}$"),
    "password": lambda _text: True,
}
UNCHECKED = ("uri", "email", "isbn", "isbn10", "isbn13", "creditcard", "ssn", "rgbcolor")


def check(fmt: str, value: str) -> bool:
    """Whether `value` has the format, as the real server decides (True for a format it drops,
    and for the few it checks that the stand-in does not)."""
    rule = CHECKS.get(fmt.replace("-", ""))
    return rule is None or rule(value)
