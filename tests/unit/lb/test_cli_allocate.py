"""`pikube lb allocate`: the real command, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_pikube

POOLS = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: first-pool, namespace: metallb-system}
spec:
  addresses: [198.51.100.230-198.51.100.231]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: example, namespace: metallb-system}
"""

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: nginx, namespace: web, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {type: LoadBalancer, selector: {app: nginx}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: web}
spec: {type: LoadBalancer, loadBalancerIP: 198.51.100.231, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: late, namespace: web}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: web}
spec: {type: ClusterIP, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: web}
spec: {replicas: 1}
"""


def write(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "metallb"
    config.mkdir()
    (config / "pools.yaml").write_text(POOLS)
    services = tmp_path / "services.yaml"
    services.write_text(SERVICES)
    return config, services


def test_json_plan_from_a_directory_and_a_file(tmp_path: Path) -> None:
    config, services = write(tmp_path)
    result = run_pikube("lb", "allocate", "-f", str(config), "-f", str(services), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "allocations": {
            "web/nginx": {"ips": ["198.51.100.230"], "pool": "first-pool"},
            "web/api": {"ips": ["198.51.100.231"], "pool": "first-pool"},
        },
        "errors": {"web/late": "no free IPv4 address in the pools it may use: first-pool"},
    }


def test_table_plan_is_the_default(tmp_path: Path) -> None:
    config, services = write(tmp_path)
    result = run_pikube("lb", "allocate", "-f", str(config), "-f", str(services))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["service", "IPs", "pool", "error"]
    assert lines[1].split() == ["web/api", "198.51.100.231", "first-pool"]
    assert lines[2].split() == ["web/nginx", "198.51.100.230", "first-pool"]
    assert lines[3].split()[:3] == ["web/late", "-", "-"]
    assert "no free IPv4 address" in lines[3]


def test_manifests_from_stdin(tmp_path: Path) -> None:
    config, _ = write(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pikube",
            "lb",
            "allocate",
            "-f",
            str(config),
            "-f",
            "-",
            "-o",
            "json",
        ],
        input=SERVICES,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["allocations"]["web/nginx"]["ips"] == ["198.51.100.230"]


def test_another_load_balancer_class(tmp_path: Path) -> None:
    config, _ = write(tmp_path)
    services = tmp_path / "svc.yaml"
    services.write_text(
        SERVICES.replace(
            "name: late, namespace: web}\nspec: {",
            "name: late, namespace: web}\nspec: {loadBalancerClass: x, ",
        )
    )
    result = run_pikube(
        "lb", "allocate", "-f", str(config), "-f", str(services), "-o", "json", "--lb-class", "x"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "allocations": {"web/late": {"ips": ["198.51.100.230"], "pool": "first-pool"}},
        "errors": {},
    }


def test_invalid_input_exits_2_with_one_line_naming_file_and_document(tmp_path: Path) -> None:
    config, services = write(tmp_path)
    (config / "zz-broken.yaml").write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad}\n"
        "spec: {addresses: [198.51.100.10/24]}\n"
    )
    result = run_pikube("lb", "allocate", "-f", str(config), "-f", str(services))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"pikube: error: {config}/zz-broken.yaml, document 1: IPAddressPool 'bad': "
        "spec.addresses[0]: CIDR '198.51.100.10/24' has host bits set"
    )

    (config / "zz-broken.yaml").write_text("kind: Service\nmetadata: {name: [\n")
    result = run_pikube("lb", "allocate", "-f", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"pikube: error: {config}/zz-broken.yaml, document 1: invalid YAML"
    )
    assert len(result.stderr.splitlines()) == 1

    result = run_pikube("lb", "allocate", "-f", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr == f"pikube: error: {tmp_path}/nope: no such file or directory\n"
