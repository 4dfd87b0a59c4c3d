"""nginx's lab configuration: everything under the site's directory, listening where asked."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from pikube.lab.services.web import BACKEND_HEADER, WELCOME_ROOT, NginxSite, argv, render_config

SITE = NginxSite(
    host="node02",
    addresses=(ipaddress.ip_address("198.51.100.22"), ipaddress.ip_address("2001:db8:68::22")),
    port=80,
    directory=Path("/run/pikube/labs/x/nginx/node02"),
)


def test_the_config_listens_on_each_address_and_serves_the_welcome_page() -> None:
    text = render_config(SITE)
    assert "listen 198.51.100.22:80;" in text
    assert "listen [2001:db8:68::22]:80;" in text
    assert f"root {WELCOME_ROOT};" in text
    assert f"add_header {BACKEND_HEADER} node02 always;" in text
    assert "daemon off;" in text  # the supervisor keeps it as its child


def test_every_file_nginx_writes_is_under_the_site_directory() -> None:
    text = render_config(SITE)
    written = re.findall(r"^\s*(?:pid|lock_file|access_log|\w+_temp_path)\s+(\S+);", text, re.M)
    assert len(written) == 8
    assert all(path.startswith(str(SITE.directory) + "/") for path in written)
    assert "/var/" not in text
    assert "/etc/nginx" not in text.replace("include /etc/nginx/mime.types;", "")
    assert argv(SITE)[-2:] == ["-e", "stderr"]  # not /var/log/nginx, even before the config


def test_a_site_without_addresses_or_with_a_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one address"):
        render_config(NginxSite("node02", (), 80, SITE.directory))
    with pytest.raises(ValueError, match="invalid port 0"):
        render_config(NginxSite("node02", SITE.addresses, 0, SITE.directory))
