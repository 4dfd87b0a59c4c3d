"""pikube's own image (ghcr.io/pikube/pikube), for linux/amd64 and linux/arm64, made without a
container engine: the same layers the repository's Dockerfile makes, written by pikube.

Three layers per architecture, each cached by a content key (the Debian one and the
dependencies' one change only when their recipe does; pikube's own changes with its source):

1. Debian: python3 and nftables with their dependency closure, downloaded for the target
   architecture by apt-get and unpacked with `dpkg -x` (nothing runs, so arm64 needs no
   emulation), trimmed of documentation and the test suite, the standard library compiled to
   bytecode, and /etc/passwd with root and nonroot (65532).
2. The daemons' Python dependencies (deploy/image/requirements.txt): wheels for the target
   platform from PyPI (`pip download --platform`), unpacked into /opt/pikube/site-packages.
3. pikube: the wheel built from this checkout, unpacked there too.

Bytecode is compiled by this machine's Python 3.11 (bytecode depends on the Python version,
not on the architecture) with unchecked hashes, so layers are the same on every build.

Pure: `wheel_members`, `image_index`, `requirements`; the rest is the adapter. Why: decision
0112.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pikube import __version__
from pikube.errors import PikubeError
from pikube.lab.hosts import rootfs
from pikube.lab.kubernetes import images, registry
from pikube.lab.kubernetes.debsource import DebianSource, run_tool
from pikube.lab.kubernetes.images import (
    CONFIG_MEDIA_TYPE,
    CONTAINERD_NAME,
    INDEX_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    OCI_REF_NAME,
    Blob,
    EntryKind,
    ImageLayout,
    LayerEntry,
    LayoutWriter,
    canonical_json,
)
from pikube.lab.kubernetes.registry import RegistryClient
from pikube.lab.lab import Lab

REPOSITORY = "ghcr.io/pikube/pikube"
ARCHITECTURES = ("amd64", "arm64")
DEBIAN_PACKAGES = ("python3", "nftables")
PYTHON = "python3.11"  # Debian 12's; the bytecode's version
SITE_PACKAGES = "opt/pikube/site-packages"
NONROOT = 65532
# pip's platform tags for the wheels of each Debian architecture (Debian 12 has glibc 2.36).
WHEEL_PLATFORMS = {
    "amd64": ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
TRIMMED = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    f"usr/lib/{PYTHON}/test/",
    f"usr/lib/{PYTHON}/idlelib/",
    f"usr/lib/{PYTHON}/lib2to3/",
    f"usr/lib/{PYTHON}/pydoc_data/",
    f"usr/lib/{PYTHON}/ensurepip/",
    f"usr/lib/{PYTHON}/config-3.11-",
)
TEXT_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": f"root:x:0:\nnonroot:x:{NONROOT}:\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}
ENV = (
    images.PATH_ENV,
    f"PYTHONPATH=/{SITE_PACKAGES}",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
)
ENTRYPOINT = ("python3", "-m", "pikube")
RECIPE_VERSION = 1
KEEP_LAYOUTS = 3  # pikube image layouts (and their registry storages) kept in the cache
ROOT = Path(__file__).resolve().parents[4]  # the checkout (src/pikube/lab/kubernetes/..)
REQUIREMENTS = ROOT / "deploy" / "image" / "requirements.txt"


def reference(version: str = __version__) -> str:
    return f"{REPOSITORY}:{version}"


def requirements(text: str) -> list[str]:
    """The pinned requirements of a requirements file (comments and blanks left out)."""
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def wheel_members(names: Iterable[str]) -> dict[str, str]:
    """Member of a wheel -> where it goes under site-packages (a wheel's `.data/purelib` and
    `.data/platlib` go to the top; its scripts, headers and data are left out)."""
    result = {}
    for name in names:
        if name.endswith("/"):
            continue
        head, _, rest = name.partition("/")
        if head.endswith(".data"):
            kind, _, inner = rest.partition("/")
            if kind in ("purelib", "platlib") and inner:
                result[name] = inner
            continue
        result[name] = name
    return result


def image_config(architecture: str, diff_ids: Sequence[str]) -> bytes:
    return canonical_json(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {
                "Env": list(ENV),
                "Entrypoint": list(ENTRYPOINT),
                "Cmd": ["--help"],
                "User": f"{NONROOT}:{NONROOT}",
                "WorkingDir": "/",
                "Labels": {"org.opencontainers.image.source": "https://github.com/pikube/pikube"},
            },
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [
                {"created_by": f"pikube image layer {n}"} for n in ("debian", "deps", "pikube")
            ][: len(diff_ids)],
        }
    )


def image_index(manifests: Mapping[str, Blob]) -> bytes:
    """The multi-platform index: one manifest per architecture."""
    entries = []
    for arch, blob in sorted(manifests.items()):
        descriptor = blob.descriptor()
        descriptor["platform"] = {"architecture": arch, "os": "linux"}
        entries.append(descriptor)
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries})


# ---------------------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class CachedLayer:
    path: Path  # the gzipped tar
    diff_id: str
    seconds: float  # what building it cost (0 on a cache hit)


def _key(*parts: object) -> str:
    text = json.dumps([RECIPE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached_layer(key: str, build: Callable[[Path], list[LayerEntry]]) -> CachedLayer:
    """A layer built once per key under <cache>/images/pikube-layers/."""
    target = rootfs.cache_dir() / "images" / "pikube-layers" / key
    if not (target / "diff_id").exists():
        with rootfs.cache_lock(f"pikube-layer-{key}"):
            if not (target / "diff_id").exists():
                started = time.monotonic()
                tmp = target.parent / f"{key}.tmp-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                try:
                    with tempfile.TemporaryDirectory(prefix="pikube-image-") as work:
                        writer = LayoutWriter(tmp / "layout")
                        blob, diff_id = writer.put_layer(build(Path(work)))
                    os.rename(writer.root / "blobs" / "sha256" / blob.digest[7:], tmp / "layer")
                    shutil.rmtree(tmp / "layout")
                    (tmp / "seconds").write_text(f"{time.monotonic() - started:.1f}\n")
                    (tmp / "diff_id").write_text(diff_id)
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                seconds = float((target / "seconds").read_text())
                return CachedLayer(target / "layer", (target / "diff_id").read_text(), seconds)
    return CachedLayer(target / "layer", (target / "diff_id").read_text(), 0.0)


def _tree(root: Path, trimmed: Sequence[str] = ()) -> list[LayerEntry]:
    entries = []
    for entry in images._tree_entries(root):
        if any(entry.path.startswith(p) or entry.path + "/" == p for p in trimmed):
            continue
        entries.append(entry)
    return entries


def _compile(tree: Path, inside: str) -> None:
    """Bytecode for every module under tree/inside, as the image's Python will find it."""
    if sys.version_info[:2] != (3, 11):
        raise PikubeError(
            f"pikube's image runs Debian 12's Python 3.11; its bytecode needs a Python 3.11 "
            f"here (this is {sys.version_info[0]}.{sys.version_info[1]})"
        )
    argv = [sys.executable, "-m", "compileall", "-q", "-j", "0"]
    argv += ["--invalidation-mode", "unchecked-hash", "-s", str(tree), "-p", "/"]
    run_tool([*argv, str(tree / inside)], f"compiling {inside}")


def _debian_entries(arch: str, work: Path) -> list[LayerEntry]:
    debs = DebianSource(arch).download(DEBIAN_PACKAGES, work / "debs")
    root = images._unpack(debs, work / "root")
    trimmed = (*TRIMMED, f"usr/lib/{MULTIARCH[arch]}/gconv/")
    for prefix in trimmed:
        shutil.rmtree(root / prefix, ignore_errors=True)
    _compile(root, f"usr/lib/{PYTHON}")
    entries = _tree(root, trimmed)
    entries += [
        LayerEntry(path, EntryKind.FILE, 0o644, data=text.encode())
        for path, text in TEXT_FILES.items()
    ]
    entries += [LayerEntry(d, EntryKind.DIRECTORY, 0o1777) for d in ("tmp", "var/tmp")]
    entries += [LayerEntry(d, EntryKind.DIRECTORY, 0o755) for d in ("run", "root")]
    return entries


def _unpack_wheels(wheels: Iterable[Path], work: Path) -> Path:
    root = work / "root"
    site = root / SITE_PACKAGES
    site.mkdir(parents=True)
    for wheel in sorted(wheels):
        with zipfile.ZipFile(wheel) as archive:
            for member, target in wheel_members(archive.namelist()).items():
                path = site / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(member))
                mode = (archive.getinfo(member).external_attr >> 16) & 0o777
                path.chmod(0o755 if mode & 0o111 else 0o644)
    _compile(root, SITE_PACKAGES)
    return root


def _pip(argv: list[str], what: str) -> None:
    """pip of the interpreter this environment was made from (uv's environments have none)."""
    python = getattr(sys, "_base_executable", sys.executable)
    run_tool([python, "-m", "pip", "--disable-pip-version-check", *argv], what)


def _deps_entries(arch: str, pins: Sequence[str], work: Path) -> list[LayerEntry]:
    wheels = work / "wheels"
    platforms = [a for p in WHEEL_PLATFORMS[arch] for a in ("--platform", p)]
    _pip(
        ["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
         "--implementation", "cp", *platforms, "-d", str(wheels), *pins],
        f"downloading the image's Python dependencies for {arch}",
    )  # fmt: skip
    return _tree(_unpack_wheels(wheels.glob("*.whl"), work))


def source_digest(root: Path = ROOT) -> str:
    """What pikube's wheel is built from: pyproject.toml, README.md and src/pikube."""
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", root / "README.md"]
    files += sorted(p for p in (root / "src" / "pikube").rglob("*") if p.is_file())
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _pikube_entries(work: Path) -> list[LayerEntry]:
    wheels = work / "wheels"
    uv = shutil.which("uv") or str(ROOT / ".cache" / "tools" / "bin" / "uv")
    if Path(uv).exists():  # script/bootstrap's uv builds offline from its cache, in seconds
        argv = [uv, "build", "--wheel", "--offline", "-q", "-o", str(wheels), str(ROOT)]
        run_tool(argv, "building pikube's wheel")
    else:
        _pip(["wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], "building pikube's wheel")
    return _tree(_unpack_wheels(wheels.glob("pikube-*.whl"), work))


@dataclass(frozen=True)
class AppImage:
    layout: ImageLayout
    reference: str
    build_seconds: dict[str, float]  # layer name -> seconds spent building it (0: cache hit)
    compressed_bytes: dict[str, int]  # architecture -> sum of its layers' compressed sizes


def ensure_image(
    architectures: Sequence[str] = ARCHITECTURES, version: str = __version__
) -> AppImage:
    """The OCI layout holding pikube's multi-platform image (layers from the caches when
    their keys match), under pikube's cache directory."""
    pins = requirements(REQUIREMENTS.read_text())
    source = source_digest()
    seconds: dict[str, float] = {}
    per_arch: dict[str, list[CachedLayer]] = {}
    for arch in architectures:
        debian = _cached_layer(
            _key("debian", arch, DEBIAN_PACKAGES, TRIMMED, TEXT_FILES, rootfs.SUITE),
            lambda work, a=arch: _debian_entries(a, work),  # type: ignore[misc]
        )
        deps = _cached_layer(
            _key("deps", arch, pins),
            lambda work, a=arch: _deps_entries(a, pins, work),  # type: ignore[misc]
        )
        own = _cached_layer(_key("pikube", source), _pikube_entries)
        per_arch[arch] = [debian, deps, own]
        for name, layer in (("debian", debian), ("deps", deps), ("pikube", own)):
            seconds[f"{name}-{arch}"] = layer.seconds
    ref = reference(version)
    key = _key("layout", ref, {a: [c.diff_id for c in ls] for a, ls in per_arch.items()})
    target = rootfs.cache_dir() / "images" / f"pikube-{key}"
    if not (target / "complete").exists():
        with rootfs.cache_lock(f"images-pikube-{key}"):
            if not (target / "complete").exists():
                _write_layout(target, ref, per_arch)
                _prune(keep=KEEP_LAYOUTS)
    index = json.loads((target / "index.json").read_bytes())
    (entry,) = index["manifests"]
    layout = ImageLayout(target, {ref: Blob(entry["mediaType"], entry["digest"], entry["size"])})
    sizes = {arch: sum(c.path.stat().st_size for c in ls) for arch, ls in per_arch.items()}
    return AppImage(layout, ref, seconds, sizes)


def stale(paths: Iterable[Path], keep: int) -> list[Path]:
    """All but the `keep` newest (by modification time) of paths. Pure but for the stat."""
    ordered = sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)
    return ordered[keep:]


def _prune(keep: int) -> None:
    """Every commit makes a new layout (and registry storage): keep the newest few, which a
    lab running meanwhile may still be serving, and remove the rest."""
    cache = rootfs.cache_dir()
    for pattern_dir in (cache / "images", cache / "registry"):
        names = [p for p in pattern_dir.glob("pikube-*") if p.is_dir() and ".tmp-" not in p.name]
        for path in stale(names, keep):
            shutil.rmtree(path, ignore_errors=True)


def _write_layout(target: Path, ref: str, per_arch: Mapping[str, Sequence[CachedLayer]]) -> None:
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = LayoutWriter(tmp)
        manifests = {}
        for arch, layers in per_arch.items():
            blobs = []
            for layer in layers:
                digest = "sha256:" + images.file_digest(layer.path)
                blob = Blob(LAYER_MEDIA_TYPE, digest, layer.path.stat().st_size)
                dest = tmp / "blobs" / "sha256" / digest[7:]
                if not dest.exists():
                    shutil.copyfile(layer.path, dest)
                blobs.append(blob)
            config = writer.put(CONFIG_MEDIA_TYPE, image_config(arch, [c.diff_id for c in layers]))
            manifests[arch] = writer.put(MANIFEST_MEDIA_TYPE, images.image_manifest(config, blobs))
        index_blob = writer.put(INDEX_MEDIA_TYPE, image_index(manifests))
        descriptor = index_blob.descriptor()
        descriptor["annotations"] = {CONTAINERD_NAME: ref, OCI_REF_NAME: ref.rsplit(":", 1)[1]}
        (tmp / "index.json").write_bytes(
            canonical_json(
                {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [descriptor]}
            )
        )
        (tmp / "complete").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def push_image(client: RegistryClient, layout: ImageLayout) -> None:
    """The index under its tag, after every platform's blobs and manifest (by digest)."""
    for ref, index_blob in layout.manifests.items():
        repository = ref.split("/", 1)[1].rsplit(":", 1)[0]
        index = json.loads(layout.blob_path(index_blob.digest).read_bytes())
        for entry in index["manifests"]:
            manifest = json.loads(layout.blob_path(entry["digest"]).read_bytes())
            for descriptor in [*manifest["layers"], manifest["config"]]:
                digest = str(descriptor["digest"])
                client.push_blob(repository, digest, layout.blob_path(digest))
            data = layout.blob_path(entry["digest"]).read_bytes()
            client.push_manifest(repository, entry["digest"], entry["mediaType"], data)
        data = layout.blob_path(index_blob.digest).read_bytes()
        pushed = client.push_manifest(repository, ref.rsplit(":", 1)[1], INDEX_MEDIA_TYPE, data)
        if pushed and pushed != index_blob.digest:
            raise PikubeError(f"registry stored {ref} as {pushed}, not {index_blob.digest}")


def serve_image(lab: Lab, image: AppImage) -> str:
    """pikube's image in the lab: pushed into its own registry storage (once per layout),
    served read-only by the router's app registry (port 5001), which the Pis' containerd uses
    for ghcr.io. Returns the reference to deploy."""
    storage = registry.ensure_storage(image.layout, push_image)
    registry.serve_registry(
        lab, storage, name=registry.APP_REGISTRY_PROCESS, port=registry.APP_REGISTRY_PORT
    )
    return image.reference
