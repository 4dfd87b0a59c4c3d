"""The cluster builder's goals on 4 lab SSH hosts: plan < 2 s, no-op apply < 3 s, fresh prep < 60 s.

Run as root: .venv/bin/python bench/cluster.py [--runs N] [--json PATH]
Builds a lab with fresh SSH hosts, then measures, always as a user runs it (the `pikube` command
from the lab's client host):
  - plan on the 4 fresh hosts (whole command, and the in-process part: connect + facts + plan),
  - apply on the 4 fresh hosts (the whole preparation, reboots included), once,
  - plan and apply on the prepared hosts (zero changes),
and, as a peer in the same run, OpenSSH running `true` on the 4 hosts one after another (the
floor of any tool that opens one SSH connection per host). Also the start-up part of plan's
time (importing what `pikube cluster plan` imports, in a fresh interpreter), and the machine's
load average before and after (the machine is shared: read the figures against it). Prints
medians; never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pikube.cluster.session import Session
from pikube.cluster.spec import load_spec
from pikube.lab.hosts import sshhosts
from pikube.lab.lab import Lab
from pikube.lab.network import netns


def _timed(argv: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def _in_namespace(namespace: str, spec_path: Path) -> float:
    """connect + gather + plan, in-process, from a thread inside the client's namespace."""
    spec = load_spec(spec_path)
    elapsed: list[float] = []

    async def plan() -> None:
        started = time.monotonic()
        async with Session(spec) as session:
            await session.plan()
        elapsed.append(time.monotonic() - started)

    def run() -> None:
        with netns.entered(namespace):
            asyncio.run(plan())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return elapsed[0]


# What `pikube cluster plan` imports before it connects (see pikube.cli.cluster).
_PLAN_IMPORTS = "import pikube.cli, pikube.cli.cluster, pikube.cluster.spec, pikube.cluster.apply"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    load_before = os.getloadavg()
    imports = [_timed([sys.executable, "-c", _PLAN_IMPORTS])[0] for _ in range(args.runs)]
    lab = Lab("benchcl")
    lab.down()
    lab.up()
    try:
        started = time.monotonic()
        sshhosts.up_ssh_hosts(lab)
        boot_s = time.monotonic() - started
        client = lab.namespace("client")
        with tempfile.TemporaryDirectory() as work:
            spec = Path(work) / "cluster.yaml"
            spec.write_text(sshhosts.cluster_spec_yaml(lab))
            pikube = ["ip", "netns", "exec", client, sys.executable, "-m", "pikube", "cluster"]
            key = str(sshhosts.client_key_path(lab.name))
            peer = []
            for _ in range(args.runs):
                started = time.monotonic()
                for host in ("master", "node01", "node02", "node03"):
                    address = str(lab.topology.host(host).ipv4)
                    subprocess.run(
                        [
                            "ip",
                            "netns",
                            "exec",
                            client,
                            "ssh",
                            "-i",
                            key,
                            "-o",
                            "BatchMode=yes",
                            "-o",
                            "StrictHostKeyChecking=no",
                            "-o",
                            "UserKnownHostsFile=/dev/null",
                            "-o",
                            "LogLevel=ERROR",
                            f"root@{address}",
                            "true",
                        ],
                        check=True,
                    )
                peer.append(time.monotonic() - started)
            fresh_plan = [_timed([*pikube, "plan", "-f", str(spec)])[0] for _ in range(args.runs)]
            fresh_inproc = [_in_namespace(client, spec) for _ in range(args.runs)]
            log = Path(work) / "apply.jsonl"
            prep_s, _out = _timed([*pikube, "apply", "-f", str(spec), "--yes", "--log", str(log)])
            entries = [json.loads(line) for line in log.read_text().splitlines()]
            commands = sum(1 for e in entries if not e.get("read_only"))
            noop_plan = [_timed([*pikube, "plan", "-f", str(spec)])[0] for _ in range(args.runs)]
            noop_inproc = [_in_namespace(client, spec) for _ in range(args.runs)]
            noop_apply = []
            for _ in range(args.runs):
                elapsed, out = _timed([*pikube, "apply", "-f", str(spec), "--yes"])
                assert "0 changes applied" in out, out
                noop_apply.append(elapsed)
    finally:
        lab.down()
    load_after = os.getloadavg()
    result = {
        "runs": args.runs,
        "load_average_1_5_15_before": load_before,
        "load_average_1_5_15_after": load_after,
        "plan_imports_s": statistics.median(imports),
        "ssh_hosts_boot_s": boot_s,
        "peer_openssh_true_4_hosts_s": statistics.median(peer),
        "plan_fresh_cli_s": statistics.median(fresh_plan),
        "plan_fresh_in_process_s": statistics.median(fresh_inproc),
        "prepare_4_fresh_hosts_s": prep_s,
        "prepare_commands": commands,
        "plan_prepared_cli_s": statistics.median(noop_plan),
        "plan_prepared_in_process_s": statistics.median(noop_inproc),
        "noop_apply_cli_s": statistics.median(noop_apply),
    }
    labels = {
        "ssh_hosts_boot_s": "boot 4 SSH hosts (lab, not the builder)",
        "peer_openssh_true_4_hosts_s": "peer: OpenSSH `true` on 4 hosts in turn",
        "plan_imports_s": "start-up: what plan imports (python -c)",
        "plan_fresh_cli_s": "plan, 4 fresh hosts (whole command)      goal < 2 s",
        "plan_fresh_in_process_s": "plan, 4 fresh hosts (connect+facts+plan)",
        "prepare_4_fresh_hosts_s": "apply, 4 fresh hosts (whole prep)       goal < 60 s",
        "plan_prepared_cli_s": "plan, 4 prepared hosts (whole command)",
        "plan_prepared_in_process_s": "plan, 4 prepared hosts (connect+facts+plan)",
        "noop_apply_cli_s": "no-op apply, 4 hosts (whole command)    goal < 3 s",
    }
    for key_name, label in labels.items():
        print(f"{label:<55} {result[key_name]:7.2f} s")
    print(f"{'commands run by the preparation (reads not counted)':<55} {commands:7d}")
    ratio = result["plan_fresh_cli_s"] / result["peer_openssh_true_4_hosts_s"]
    print(f"{'plan / peer ratio':<55} {ratio:7.2f}")
    print(
        f"{'load average (1, 5, 15 min) before / after':<55} "
        + " ".join(f"{v:.2f}" for v in load_before)
        + " / "
        + " ".join(f"{v:.2f}" for v in load_after)
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
