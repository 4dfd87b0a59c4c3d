"""The committed wrapper modules agree with the component table (they are built together)."""

from __future__ import annotations

import re

import pytest

from pikube.lab.kubernetes.components import COMPONENTS, Component, Toolchain
from pikube.lab.kubernetes.gobuild import wrapper_files


@pytest.mark.parametrize("comp", COMPONENTS, ids=lambda c: c.name)
def test_the_wrapper_requires_the_module_at_the_version_built(comp: Component) -> None:
    go_mod = wrapper_files(comp)["go.mod"].decode()
    assert re.search(rf"^\s*(require\s+)?{re.escape(comp.module)} {comp.version}$", go_mod, re.M)


@pytest.mark.parametrize(
    "comp", [c for c in COMPONENTS if c.toolchain is Toolchain.GO], ids=lambda c: c.name
)
def test_the_wrapper_names_every_program_and_the_go_release(comp: Component) -> None:
    files = wrapper_files(comp)
    tools = files["tools.go"].decode()
    assert tools.startswith("//go:build tools\n")
    for binary in comp.binaries:
        assert f'_ "{binary.package}"' in tools, binary.name
    go_mod = files["go.mod"].decode()
    toolchain = re.search(r"^toolchain (\S+)$", go_mod, re.M)
    if toolchain:  # Go releases before 1.21 know no toolchain line
        assert toolchain.group(1) == comp.go
    else:
        assert tuple(int(part) for part in comp.go.removeprefix("go").split(".")) < (1, 21)
