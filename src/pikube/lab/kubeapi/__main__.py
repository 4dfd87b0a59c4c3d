"""`python -m pikube.lab.kubeapi`: run the Kubernetes API stand-in (the lab starts it this way).

    python -m pikube.lab.kubeapi --listen 198.51.100.20:6443 --pki-dir DIR [--unix-socket PATH]

DIR holds ca.crt, apiserver.crt and apiserver.key (see `pikube.lab.kubeapi.launch`). It logs
one line when it serves, and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from pikube.lab.kubeapi.seed import seed_cluster
from pikube.lab.kubeapi.server import ApiServer, start, tls_context
from pikube.lab.kubeapi.store import DEFAULT_WINDOW, Store


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pikube.lab.kubeapi", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (PORT 0: any)")
    parser.add_argument("--pki-dir", type=Path, required=True)
    parser.add_argument("--unix-socket", type=Path, help="an admin socket for the lab's tooling")
    parser.add_argument("--advertise-address", help="the address the kubernetes Service names")
    parser.add_argument("--service-cidr", default=None)
    parser.add_argument(
        "--watch-window",
        type=int,
        default=DEFAULT_WINDOW,
        help="changes kept per resource for watches (older: 410 Gone)",
    )
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once serving")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    host, _, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    advertise = args.advertise_address or host
    store = Store(service_cidr=args.service_cidr, window=args.watch_window)
    api = ApiServer(store, bookmark_interval_s=args.bookmark_interval)
    tls = tls_context(
        args.pki_dir / "apiserver.crt", args.pki_dir / "apiserver.key", args.pki_dir / "ca.crt"
    )
    running = await start(
        api, host=host, port=int(port_text), tls=tls, unix_socket=args.unix_socket
    )
    api.advertise_address = f"{advertise}:{running.port}"
    seed_cluster(store, advertise, running.port)
    if args.port_file:
        args.port_file.write_text(f"{running.port}\n")
    print(f"kubeapi: serving https://{args.listen.rpartition(':')[0]}:{running.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("kubeapi: stopping", flush=True)
    await running.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(_parse(argv)))


if __name__ == "__main__":
    main()
