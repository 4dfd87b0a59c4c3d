"""Four fresh lab Pis to nginx answering HTTP 200 with one `pikube cluster apply`, and the
second apply (nothing to do): `pikube bench cluster` (see pikube.bench.cluster), kept under
this name for the records that quote it.

Run as root: .venv/bin/python bench/cluster_bootstrap.py [--runs N] [--json PATH]
"""

from __future__ import annotations

import sys

from pikube.cli.bench import cluster_command

if __name__ == "__main__":
    cluster_command.main(args=sys.argv[1:], prog_name="bench/cluster_bootstrap.py")
