"""Huge and hostile input: bounded error messages, and size limits on every input file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pikube.cli import cli
from pikube.cluster.bootstrap import read_flannel_manifest
from pikube.cluster.spec import SEED_SPEC, load_spec, parse_spec
from pikube.errors import MESSAGE_CHARS, InvalidInput, PikubeError, bounded, excerpt
from pikube.inputs import KEY_LIMIT_BYTES, MANIFESTS_LIMIT_BYTES, SPEC_LIMIT_BYTES
from pikube.lb.config import load_manifests, loader
from pikube.lb.config.fields import Origin
from tests.helpers import run_pikube

POOL = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: p, namespace: metallb-system}}
spec: {{addresses: [{address}]}}
"""


def test_a_long_value_becomes_an_excerpt_that_says_how_long_it_was() -> None:
    assert excerpt("short") == "short"
    long = excerpt("a" * 5_000_000)
    assert long.startswith("aaaa")
    assert long.endswith("…(5000000 characters)")
    assert len(long) < 200


def test_every_error_message_is_one_bounded_line_keeping_its_start_and_end() -> None:
    message = "cluster.yaml: the field " + "word " * 1_000_000 + "; do this"
    text = PikubeError(message).message
    assert len(text) < MESSAGE_CHARS + 50
    assert text.startswith("cluster.yaml: the field word")
    assert text.endswith("word ; do this")
    assert "characters cut" in text
    assert bounded("two\nlines") == "two lines"
    assert PikubeError("as it is, when short").message == "as it is, when short"


def test_a_huge_scalar_is_quoted_in_a_few_characters(tmp_path: Path) -> None:
    big = tmp_path / "pool.yaml"
    big.write_text(POOL.format(address="x" * (5 * 1024 * 1024)))
    result = run_pikube("lb", "allocate", "-f", str(big))
    assert result.returncode == 2
    assert len(result.stderr) < 600, result.stderr[:600]
    assert result.stderr.startswith(f"pikube: error: {big}, document 1: IPAddressPool 'p': ")
    assert "xxx…(5242882 characters) is neither a CIDR nor a range" in result.stderr  # quotes too


def _write_over(path: Path, limit: int) -> None:
    doc = POOL.format(address="198.51.100.230/32") + "---\n"
    path.write_text(doc * (limit // len(doc) + 1))


def test_manifests_over_the_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    _write_over(big, MANIFESTS_LIMIT_BYTES)
    result = run_pikube("lb", "allocate", "-f", str(big))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"pikube: error: {big}: too large: manifests may be at most 8.0 MiB in all"
    )
    piped = subprocess.run(
        [sys.executable, "-m", "pikube", "lb", "allocate", "-f", "-"],
        input=big.read_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 2
    assert piped.stderr.startswith(b"pikube: error: <stdin>: too large")


def test_the_limit_counts_every_file_of_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speaker reads its `--source dir:` the same way: a directory of many files, each
    small, is bounded too, and refused before any file is parsed (parsing the first two
    took 30 s on a busy machine)."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    for index in range(3):
        _write_over(directory / f"{index}.yaml", MANIFESTS_LIMIT_BYTES // 3)
    parsed: list[str] = []
    real = loader.documents_from_text

    def counted(text: str, path: str) -> list[tuple[object, Origin]]:
        parsed.append(path)
        return real(text, path)

    monkeypatch.setattr(loader, "documents_from_text", counted)
    with pytest.raises(PikubeError, match=r"/2\.yaml: too large: manifests may be at most") as e:
        load_manifests([directory])
    assert e.value.exit_code == 2
    assert parsed == []


def test_the_cluster_spec_has_a_limit_too(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SEED_SPEC + "#" * SPEC_LIMIT_BYTES)
    with pytest.raises(PikubeError, match=r"the cluster spec may be at most 1\.0 MiB"):
        load_spec(spec)
    # A device that never ends is refused as soon as the limit is read, not read for ever.
    with pytest.raises(PikubeError, match="/dev/zero: too large"):
        load_spec("/dev/zero")


def test_a_usage_error_quotes_a_huge_argument_in_a_few_characters() -> None:
    """click's own usage errors quote the bad value too; an argument can be 128 KiB."""
    huge = "x" * 100_000
    for args in (["cluster", "plan", "-o", huge], ["lab", huge], [huge]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert len(result.output) < 600, result.output[:600]
        assert "…(1000" in result.output  # the excerpt says how long the value was


def test_a_key_file_has_a_limit(tmp_path: Path) -> None:
    key = tmp_path / "speaker.key"
    with key.open("wb") as sparse:
        sparse.truncate(50 * 1024 * 1024)
    result = CliRunner().invoke(
        cli,
        ["lb", "speaker", "--node", "n1", "--source", f"dir:{tmp_path}", "--key-file", str(key)],
    )
    assert result.exit_code == 2
    assert result.output == (
        f"pikube: error: {key}: too large: a key file may be at most {KEY_LIMIT_BYTES} bytes in "
        "all, and this brings them to 50.0 MiB or more; it holds one key: "
        "`head -c 32 /dev/urandom | base64`\n"
    )


def test_a_local_flannel_manifest_has_the_manifests_limit(tmp_path: Path) -> None:
    big = tmp_path / "kube-flannel.yml"
    with big.open("wb") as sparse:
        sparse.truncate(50 * 1024 * 1024)
    data = yaml.safe_load(SEED_SPEC)
    data["flannel"] = {"manifest": str(big), "sha256": None}
    spec = parse_spec(data, "cluster.yaml")
    with pytest.raises(InvalidInput, match=r"kube-flannel.yml: too large: flannel's manifest"):
        read_flannel_manifest(spec)
