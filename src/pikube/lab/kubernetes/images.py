"""OCI images of the seed's cluster, made without a container engine.

Owns which images the lab's registry holds (exactly the references kubeadm v1.31.5 and
kube-flannel.yml name, plus docker.io/library/nginx), what goes in each (built binaries, a small
Debian base where a program needs iptables or a shell tool, Debian's nginx), and rendering them
as an OCI image layout: deterministic layer tars, image configs, manifests and the index.

Pure: `lab_images`, `image_config`, `image_manifest`, `layout_index`, `write_layer` (to any
binary stream) and `Blob`; the same inputs give the same digests on every run. The adapter
(`ensure_images`) downloads the Debian packages with apt-get, unpacks them with `dpkg -x`,
and caches the finished layout under pikube's cache directory by a content key. How images
differ from upstream's: docs/decisions/0056.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pikube.errors import PikubeError
from pikube.lab.hosts import rootfs
from pikube.lab.kubernetes.components import BY_NAME
from pikube.lab.kubernetes.debsource import DebianSource, dpkg_architecture, run_tool

# Tags are the versions the seed names (kubeadm's constants, kube-flannel.yml), whatever version
# the component table had to build instead (components.py: `pinned`).
KUBERNETES_TAG = BY_NAME["kubernetes"].pinned
ETCD_TAG = BY_NAME["etcd"].pinned.removeprefix("v") + "-0"  # kubeadm's etcd image revision
COREDNS_TAG = BY_NAME["coredns"].pinned
PAUSE_TAG = "3.10"  # kubeadm v1.31.5's constant; built from the Kubernetes tree
# flannel's images are named as the kube-flannel.yml the lab applies names them: the one in the
# module of the flannel version built (v0.26.1; v0.26.3's is not served), so that manifest is
# applied unmodified. Its CNI-plugin image holds the CNI project's flannel plugin (decision 0051).
FLANNEL_TAG = BY_NAME["flannel"].version
FLANNEL_CNI_PLUGIN_TAG = "v1.5.1-flannel2"
NGINX_TAG = "latest"

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd's import names an image by this annotation (the OCI one holds only the tag).
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The Debian base: iptables (kube-proxy, flanneld), conntrack (kube-proxy's UDP clean-up) and
# cp (flannel's init containers), with what they link against.
BASE_PACKAGES = ("iptables", "conntrack", "coreutils", "dash")
NGINX_PACKAGES = ("nginx",)
# Debian's iptables picks its backend with update-alternatives in a maintainer script, which
# `dpkg -x` does not run: the image gets the links the script would make (nft backend, as on
# the lab hosts' Debian 12).
IPTABLES_LINKS = {
    f"usr/sbin/{name}": "xtables-nft-multi"
    for name in (
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    )
}
# What a base image needs that no package's files provide (Debian makes them in postinst).
BASE_TEXT_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"
    "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}
BASE_LINKS = {"bin/sh": "dash", **IPTABLES_LINKS}
# Left out of the Debian layers: documentation, manuals and translations nobody reads in a pod.
TRIMMED_PREFIXES = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "usr/lib/x86_64-linux-gnu/gconv/",
)
RECIPE_VERSION = 1


class Source(enum.Enum):
    """Where a layer's files come from."""

    BINARIES = "binaries"  # built binaries, by name
    DEBIAN_BASE = "debian-base"  # BASE_PACKAGES
    DEBIAN_NGINX = "debian-nginx"  # NGINX_PACKAGES less what the base has


@dataclass(frozen=True)
class BinaryFile:
    """A built binary placed at `path` (relative to the image root)."""

    binary: str
    path: str


@dataclass(frozen=True)
class LayerSpec:
    source: Source
    binaries: tuple[BinaryFile, ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    reference: str  # registry/repository:tag, as the manifests name it
    layers: tuple[LayerSpec, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""

    @property
    def repository(self) -> str:
        """registry.k8s.io/coredns/coredns:v1.11.3 -> coredns/coredns."""
        return self.reference.split("/", 1)[1].rsplit(":", 1)[0]

    @property
    def registry(self) -> str:
        return self.reference.split("/", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


_BASE = LayerSpec(Source.DEBIAN_BASE)


def _binaries(*pairs: tuple[str, str]) -> LayerSpec:
    return LayerSpec(Source.BINARIES, tuple(BinaryFile(b, p) for b, p in pairs))


def lab_images(
    flannel_tag: str = FLANNEL_TAG, flannel_cni_plugin_tag: str = FLANNEL_CNI_PLUGIN_TAG
) -> tuple[ImageSpec, ...]:
    """The images a kubeadm v1.31.5 cluster with flannel and the seed's nginx pulls."""
    k8s = "registry.k8s.io"
    control_plane = tuple(
        ImageSpec(
            f"{k8s}/{name}:{KUBERNETES_TAG}",
            (_binaries((name, f"usr/local/bin/{name}")),),
            entrypoint=(f"/usr/local/bin/{name}",),
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    )
    return (
        *control_plane,
        ImageSpec(
            f"{k8s}/kube-proxy:{KUBERNETES_TAG}",
            (_BASE, _binaries(("kube-proxy", "usr/local/bin/kube-proxy"))),
            entrypoint=("/usr/local/bin/kube-proxy",),
        ),
        ImageSpec(
            f"{k8s}/etcd:{ETCD_TAG}",
            (_binaries(("etcd", "usr/local/bin/etcd"), ("etcdctl", "usr/local/bin/etcdctl")),),
            entrypoint=("/usr/local/bin/etcd",),
        ),
        ImageSpec(
            f"{k8s}/coredns/coredns:{COREDNS_TAG}",
            (_binaries(("coredns", "coredns")),),
            entrypoint=("/coredns",),
            exposed_ports=("53/tcp", "53/udp"),
        ),
        ImageSpec(
            f"{k8s}/pause:{PAUSE_TAG}",
            (_binaries(("pause", "pause")),),
            entrypoint=("/pause",),
            user="65535:65535",
        ),
        ImageSpec(
            f"docker.io/flannel/flannel:{flannel_tag}",
            (_BASE, _binaries(("flanneld", "opt/bin/flanneld"))),
            entrypoint=("/opt/bin/flanneld",),
        ),
        ImageSpec(
            f"docker.io/flannel/flannel-cni-plugin:{flannel_cni_plugin_tag}",
            (_BASE, _binaries(("flannel", "flannel"))),
            cmd=("/bin/sh",),
        ),
        ImageSpec(
            f"docker.io/library/nginx:{NGINX_TAG}",
            (_BASE, LayerSpec(Source.DEBIAN_NGINX)),
            cmd=("nginx", "-g", "daemon off;"),
            exposed_ports=("80/tcp",),
            stop_signal="SIGQUIT",
        ),
    )


def required_binaries(images: Iterable[ImageSpec]) -> list[str]:
    return sorted({b.binary for i in images for layer in i.layers for b in layer.binaries})


# ---------------------------------------------------------------------------- layers


class EntryKind(enum.Enum):
    DIRECTORY = "directory"
    FILE = "file"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class LayerEntry:
    """One member of a layer tar. A file's bytes are `data`, or read from `source`."""

    path: str  # relative, no leading slash
    kind: EntryKind
    mode: int = 0o755
    data: bytes | None = None
    source: Path | None = None
    link_target: str = ""


def with_parent_directories(entries: Iterable[LayerEntry]) -> list[LayerEntry]:
    """The entries, plus a directory for every parent not listed, sorted by path."""
    by_path = {e.path: e for e in entries}
    for path in list(by_path):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            by_path.setdefault(parent, LayerEntry(parent, EntryKind.DIRECTORY, 0o755))
    return [by_path[p] for p in sorted(by_path)]


def write_layer(entries: Iterable[LayerEntry], out: IO[bytes]) -> None:
    """An uncompressed layer tar: sorted, owned by root, every mtime 0 (deterministic)."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in with_parent_directories(entries):
            info = tarfile.TarInfo(entry.path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = entry.mode
            if entry.kind is EntryKind.DIRECTORY:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind is EntryKind.SYMLINK:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.link_target
                tar.addfile(info)
            elif entry.source is not None:
                info.size = entry.source.stat().st_size
                with entry.source.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                data = entry.data or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def binary_layer_entries(layer: LayerSpec, binaries: Mapping[str, Path]) -> list[LayerEntry]:
    return [
        LayerEntry(b.path, EntryKind.FILE, 0o755, source=binaries[b.binary]) for b in layer.binaries
    ]


def base_extra_entries() -> list[LayerEntry]:
    """What the Debian base adds to the unpacked packages: users, nsswitch, alternatives."""
    entries = [
        LayerEntry(path, EntryKind.FILE, 0o644, data=text.encode())
        for path, text in BASE_TEXT_FILES.items()
    ]
    entries += [
        LayerEntry(path, EntryKind.SYMLINK, 0o777, link_target=target)
        for path, target in BASE_LINKS.items()
    ]
    entries += [LayerEntry(d, EntryKind.DIRECTORY, 0o1777) for d in ("tmp", "var/tmp")]
    entries += [LayerEntry(d, EntryKind.DIRECTORY, 0o755) for d in ("run", "root", "etc/nginx")]
    return entries


# Debian enables its default site in nginx's postinst; the image serves the welcome page on port
# 80 the way docker.io/library/nginx does, and logs to the container's output.
NGINX_SITE = """\
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    root /usr/share/nginx/html;
    index index.html;
    server_name _;
}
"""


def nginx_extra_entries() -> list[LayerEntry]:
    return [
        LayerEntry("etc/nginx/conf.d/default.conf", EntryKind.FILE, 0o644, NGINX_SITE.encode()),
        LayerEntry("var/log/nginx/access.log", EntryKind.SYMLINK, 0o777, link_target="/dev/stdout"),
        LayerEntry("var/log/nginx/error.log", EntryKind.SYMLINK, 0o777, link_target="/dev/stderr"),
        LayerEntry("var/lib/nginx", EntryKind.DIRECTORY, 0o755),
    ]


def is_trimmed(path: str) -> bool:
    return any(path.startswith(prefix) or path + "/" == prefix for prefix in TRIMMED_PREFIXES)


# ---------------------------------------------------------------------------- JSON


@dataclass(frozen=True)
class Blob:
    """Content addressed by its sha256, with the media type a manifest gives it."""

    media_type: str
    digest: str  # sha256:<hex>
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))

    def descriptor(self) -> dict[str, object]:
        result: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            result["annotations"] = dict(sorted(self.annotations.items()))
        return result


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_config(image: ImageSpec, diff_ids: Sequence[str], architecture: str) -> bytes:
    """The image configuration (no creation time, so it is the same on every build)."""
    config: dict[str, object] = {"Env": [PATH_ENV], "WorkingDir": "/"}
    if image.entrypoint:
        config["Entrypoint"] = list(image.entrypoint)
    if image.cmd:
        config["Cmd"] = list(image.cmd)
    if image.user:
        config["User"] = image.user
    if image.exposed_ports:
        config["ExposedPorts"] = {port: {} for port in image.exposed_ports}
    if image.stop_signal:
        config["StopSignal"] = image.stop_signal
    config["Labels"] = {"dev.pikube.lab.image": "built by pikube for the lab"}
    return canonical_json(
        {
            "architecture": architecture,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": f"pikube lab layer {n}"} for n in range(len(diff_ids))],
        }
    )


def image_manifest(config: Blob, layers: Sequence[Blob]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
        }
    )


def layout_index(manifests: Mapping[str, Blob], architecture: str) -> bytes:
    """index.json of the layout: one manifest per reference, named for `ctr images import`."""
    entries = []
    for reference, blob in sorted(manifests.items()):
        descriptor = blob.descriptor()
        descriptor["annotations"] = {
            CONTAINERD_NAME: reference,
            OCI_REF_NAME: reference.rsplit(":", 1)[1],
        }
        descriptor["platform"] = {"architecture": architecture, "os": "linux"}
        entries.append(descriptor)
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries})


def gzip_bytes(data: bytes) -> bytes:
    """gzip with no name and mtime 0: the same input always gives the same bytes."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


# ---------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class ImageLayout:
    """A cached OCI image layout and what it holds."""

    path: Path
    manifests: Mapping[str, Blob]  # reference -> manifest blob

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def manifest(self, reference: str) -> dict[str, object]:
        data = json.loads(self.blob_path(self.manifests[reference].digest).read_bytes())
        assert isinstance(data, dict)
        return data


class LayoutWriter:
    """Writes blobs into an OCI layout directory (the adapter half of the renderers above)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))

    def put(self, media_type: str, data: bytes) -> Blob:
        blob = Blob.of(media_type, data)
        path = self.root / "blobs" / "sha256" / blob.digest.removeprefix("sha256:")
        if not path.exists():
            path.write_bytes(data)
        return blob

    def put_layer(self, entries: Iterable[LayerEntry]) -> tuple[Blob, str]:
        """The compressed layer blob and its diff_id (the uncompressed tar's digest)."""
        raw = io.BytesIO()
        write_layer(entries, raw)
        tar = raw.getvalue()
        diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
        return self.put(LAYER_MEDIA_TYPE, gzip_bytes(tar)), diff_id


def images_key(
    images: Sequence[ImageSpec], binary_digests: Mapping[str, str], architecture: str
) -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "images": [repr(i) for i in images],
        "binaries": dict(sorted(binary_digests.items())),
        "base": [BASE_PACKAGES, NGINX_PACKAGES, BASE_TEXT_FILES, BASE_LINKS, TRIMMED_PREFIXES],
        "nginx": NGINX_SITE,
        "architecture": architecture,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_images(
    binaries: Mapping[str, Path],
    images: Sequence[ImageSpec] | None = None,
    debian: DebianSource | None = None,
) -> ImageLayout:
    """The OCI layout holding `images` (built once, then a cache hit), under pikube's cache."""
    images = tuple(images if images is not None else lab_images())
    missing = [name for name in required_binaries(images) if name not in binaries]
    if missing:
        raise PikubeError(f"cannot build the lab's images: no binary for {', '.join(missing)}")
    arch = dpkg_architecture()
    digests = {name: file_digest(binaries[name]) for name in required_binaries(images)}
    target = rootfs.cache_dir() / "images" / images_key(images, digests, arch)
    if not (target / "complete").exists():
        with rootfs.cache_lock(f"images-{target.name}"):
            if not (target / "complete").exists():
                _build_layout(target, images, binaries, arch, debian or DebianSource())
    index = json.loads((target / "index.json").read_bytes())
    manifests = {
        m["annotations"][CONTAINERD_NAME]: Blob(m["mediaType"], m["digest"], m["size"])
        for m in index["manifests"]
    }
    return ImageLayout(target, manifests)


def _build_layout(
    target: Path,
    images: Sequence[ImageSpec],
    binaries: Mapping[str, Path],
    arch: str,
    debian: DebianSource,
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = LayoutWriter(tmp)
        debian_layers: dict[Source, tuple[Blob, str]] = {}
        needed = {layer.source for image in images for layer in image.layers}
        if needed & {Source.DEBIAN_BASE, Source.DEBIAN_NGINX}:
            with tempfile.TemporaryDirectory(prefix="pikube-image-debs-") as work_dir:
                work = Path(work_dir)
                base_debs = debian.download(BASE_PACKAGES, work / "base")
                base_root = _unpack(base_debs, work / "base-root")
                base_entries = [*_tree_entries(base_root), *base_extra_entries()]
                debian_layers[Source.DEBIAN_BASE] = writer.put_layer(base_entries)
                if Source.DEBIAN_NGINX in needed:
                    all_debs = debian.download((*BASE_PACKAGES, *NGINX_PACKAGES), work / "nginx")
                    base_names = {d.name for d in base_debs}
                    extra = [d for d in all_debs if d.name not in base_names]
                    nginx_root = _unpack(extra, work / "nginx-root")
                    debian_layers[Source.DEBIAN_NGINX] = writer.put_layer(
                        [*_tree_entries(nginx_root), *nginx_extra_entries()]
                    )
        manifests = {}
        for image in images:
            layer_blobs, diff_ids = [], []
            for layer in image.layers:
                if layer.source is Source.BINARIES:
                    blob, diff_id = writer.put_layer(binary_layer_entries(layer, binaries))
                else:
                    blob, diff_id = debian_layers[layer.source]
                layer_blobs.append(blob)
                diff_ids.append(diff_id)
            config = writer.put(CONFIG_MEDIA_TYPE, image_config(image, diff_ids, arch))
            manifest = writer.put(MANIFEST_MEDIA_TYPE, image_manifest(config, layer_blobs))
            manifests[image.reference] = manifest
        (tmp / "index.json").write_bytes(layout_index(manifests, arch))
        (tmp / "complete").write_text("")
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tree_entries(root: Path) -> Iterator[LayerEntry]:
    """Every file, directory and symlink under root as layer entries (trimmed of docs)."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if is_trimmed(relative):
            continue
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            yield LayerEntry(relative, EntryKind.SYMLINK, 0o777, link_target=os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            yield LayerEntry(relative, EntryKind.DIRECTORY, mode)
        elif stat.S_ISREG(info.st_mode):
            yield LayerEntry(relative, EntryKind.FILE, mode, source=path)


def _unpack(debs: Sequence[Path], into: Path) -> Path:
    into.mkdir(parents=True)
    for deb in sorted(debs):
        run_tool(["dpkg-deb", "-x", str(deb), str(into)], f"unpacking {deb.name}")
    return into
