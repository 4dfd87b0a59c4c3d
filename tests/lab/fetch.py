"""Fetch a URL from inside a lab host with Python's own HTTP client (an independent client)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from pikube.lab.lab import Lab

_SCRIPT = """
import json, sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        print(json.dumps({"status": r.status, "headers": dict(r.headers),
                          "body": r.read().decode(errors="replace")}))
except (urllib.error.URLError, OSError) as exc:
    print(json.dumps({"status": None, "headers": {}, "body": "", "error": repr(exc)}))
"""


@dataclass(frozen=True)
class Fetched:
    status: int | None
    headers: dict[str, str]
    body: str
    error: str | None


def fetch(lab: Lab, host: str, url: str, timeout_s: float = 2.0) -> Fetched:
    out = lab.run(host, [sys.executable, "-c", _SCRIPT, url, str(timeout_s)], check=True)
    data = json.loads(out.stdout)
    return Fetched(data["status"], data["headers"], data["body"], data.get("error"))
