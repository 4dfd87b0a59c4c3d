"""What the lab's Kubernetes packages, images and registry cost to make, cold and cached.

Run as root once the binaries are built (`pikube lab build`):
    .venv/bin/python bench/lab_artifacts.py [--runs N] [--json PATH]

Each run uses a fresh temporary cache for the images and the registry (the binaries come from
pikube's cache and are not rebuilt). Peers in the same run: the five .deb packages with gzip
(what debs.py uses) against xz (dpkg-deb's default), and filling the registry against copying
the same layout with `cp -a`. Prints medians (and JSON when asked); never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pikube.lab.kubernetes import binaries, debs, images, registry


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _debs(kube: dict[str, Path], out: Path, compression: str) -> float:
    if compression == "gzip":
        started = time.monotonic()
        debs.build_debs(debs.lab_packages(), kube, out, "amd64")
        return time.monotonic() - started
    # The peer: the same staged packages through dpkg-deb's default compressor.
    gz = out.parent / "gz-for-xz"
    debs.build_debs(debs.lab_packages(), kube, gz, "amd64")
    started = time.monotonic()
    out.mkdir(parents=True)
    for deb in sorted(gz.glob("*.deb")):
        stage = out.parent / "xz-stage" / deb.stem
        subprocess.run(["dpkg-deb", "-R", str(deb), str(stage)], check=True)
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(out / deb.name)],
            check=True,
            capture_output=True,
        )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    specs = images.lab_images()
    image_binaries = binaries.built_binaries(images.required_binaries(specs))
    kube = binaries.built_binaries(debs.required_binaries(debs.lab_packages()))
    figures: dict[str, list[float]] = {}

    def record(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pikube-bench-") as tmp_dir:
            tmp = Path(tmp_dir)
            os.environ["PIKUBE_CACHE_DIR"] = str(tmp / "cache")
            started = time.monotonic()
            layout = images.ensure_images(image_binaries, specs)
            record("images_cold_s", time.monotonic() - started)
            started = time.monotonic()
            images.ensure_images(image_binaries, specs)
            record("images_cached_s", time.monotonic() - started)
            record("images_mb", _size_mb(layout.path))
            started = time.monotonic()
            registry.ensure_storage(layout)
            record("registry_fill_s", time.monotonic() - started)
            started = time.monotonic()
            subprocess.run(["cp", "-a", str(layout.path), str(tmp / "copy")], check=True)
            record("peer_cp_layout_s", time.monotonic() - started)
            started = time.monotonic()
            registry.ensure_storage(layout)
            record("registry_cached_s", time.monotonic() - started)
            record("debs_gzip_s", _debs(kube, tmp / "gzip", "gzip"))
            record("debs_gzip_mb", _size_mb(tmp / "gzip"))
            record("peer_debs_xz_s", _debs(kube, tmp / "xz", "xz"))
            record("peer_debs_xz_mb", _size_mb(tmp / "xz"))
    result: dict[str, object] = {"runs": args.runs}
    for key, values in figures.items():
        result[key] = statistics.median(values)
        print(f"{key:<22} median {statistics.median(values):9.2f}  (runs: {len(values)})")
    ratios = {
        "registry_fill_vs_cp": statistics.median(figures["registry_fill_s"])
        / statistics.median(figures["peer_cp_layout_s"]),
        "debs_xz_vs_gzip_time": statistics.median(figures["peer_debs_xz_s"])
        / statistics.median(figures["debs_gzip_s"]),
        "debs_xz_vs_gzip_size": statistics.median(figures["peer_debs_xz_mb"])
        / statistics.median(figures["debs_gzip_mb"]),
    }
    for key, value in ratios.items():
        print(f"{key:<22} ratio  {value:9.2f}")
    result["ratios"] = ratios
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
