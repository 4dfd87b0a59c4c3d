"""Debian's nginx, one per host, serving the seed's welcome page on the lab LAN."""

from __future__ import annotations

import ipaddress

import pytest

from pikube.lab import state
from pikube.lab.hosts.processes import is_running
from pikube.lab.lab import Lab
from pikube.lab.services import web
from pikube.lab.services.seed_service import http_body
from tests.lab.fetch import fetch

pytestmark = pytest.mark.lab


def test_nginx_serves_the_welcome_page_from_two_hosts_side_by_side(lab: Lab) -> None:
    sites = [web.site_for(lab, "node02"), web.site_for(lab, "master")]
    records = [web.start(lab, site) for site in sites]
    for url, host in (
        ("http://198.51.100.22/", "node02"),
        ("http://[2001:db8:68::22]/", "node02"),
        ("http://198.51.100.20/", "master"),
    ):
        page = fetch(lab, "client", url)
        assert page.status == 200, page.error
        assert "<title>Welcome to nginx!</title>" in page.body
        assert page.headers[web.BACKEND_HEADER] == host
    for site, record in zip(sites, records, strict=True):
        assert site.directory.is_relative_to(state.lab_dir(lab.name))
        assert int(site.pid_path.read_text()) == record.pid  # its own pid file, not /run/nginx.pid
        assert "GET / HTTP/1.1" in site.access_log.read_text()
    # A third one, on node03's loopback only, read from inside node03.
    loopback = web.site_for(lab, "node03", 8080, [ipaddress.IPv4Address("127.0.0.1")])
    web.start(lab, loopback)
    assert b"Welcome to nginx!" in http_body(lab, "node03", 8080, "/")
    with pytest.raises(OSError, match="404"):
        http_body(lab, "node03", 8080, "/missing")
    web.stop(lab, records[0])
    assert not is_running(records[0].pid)
    assert fetch(lab, "client", "http://198.51.100.22/").status is None  # node02 stopped...
    assert fetch(lab, "client", "http://198.51.100.20/").status == 200  # ...master still serves
