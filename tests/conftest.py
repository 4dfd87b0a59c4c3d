"""Fixtures shared by all tests: fresh labs for lab tests, and a leak check at session end.

Lab tests (marker `lab`) need root and network namespaces; they are skipped elsewhere and
always run in CI, which runs as root. Every lab a test builds gets a name from `new_lab_name()`;
when the session ends, any namespace or process of those labs that is still there fails the run
(and is removed, so one leak does not poison the next run).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import settings

from pikube.lab.hosts.processes import kill_all, marked_pids
from pikube.lab.kubeapi.launch import KubeApi, start_in_lab
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.topology import lab_of_namespace
from tests.kube_api import KubeTarget, kube_target

_SESSION_LABS: set[str] = set()

# Tests never assert wall-clock times, and Hypothesis's per-example deadline is one: on this
# shared machine an example that takes 0.3 ms can take 340 ms once, and fail the run.
settings.register_profile("pikube", deadline=None)
settings.load_profile("pikube")


def new_lab_name() -> str:
    """A lab name unique to this test session ("t" and 8 hex digits)."""
    name = "t" + secrets.token_hex(4)
    _SESSION_LABS.add(name)
    return name


def is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_root():
        return
    skip = pytest.mark.skip(reason="lab tests need root (network namespaces); CI runs as root")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTarget]:
    """The load balancer's API tests' Kubernetes API: one real etcd + kube-apiserver on
    127.0.0.1 for the whole session (tests.kube_api), started on first use."""
    with kube_target(tmp_path_factory.mktemp("kube-api")) as target:
        yield target


@contextlib.contextmanager
def fresh_lab() -> Iterator[Lab]:
    """A freshly built lab under a session-unique name, removed afterwards whatever happens
    (for fixtures of any scope)."""
    the_lab = Lab(new_lab_name())
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A freshly built lab, removed after the test whatever happens."""
    with fresh_lab() as the_lab:
        yield the_lab


def _leftovers() -> tuple[list[str], list[int]]:
    namespaces = [ns for ns in netns.list_namespaces() if lab_of_namespace(ns) in _SESSION_LABS]
    pids = [pid for name in _SESSION_LABS for pid in marked_pids(name)]
    return namespaces, pids


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not is_root() or not _SESSION_LABS:
        return
    namespaces, pids = _leftovers()
    if not namespaces and not pids:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (
        f"LEAK: lab tests left behind namespaces {namespaces} and processes {pids}; "
        "every lab must be torn down, also when a test fails"
    )
    if reporter is not None:
        reporter.write_line(message, red=True)
    kill_all(pids)
    for ns in namespaces:
        netns.remove(ns)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def kubeapi(lab: Lab) -> KubeApi:
    """The Kubernetes API stand-in serving in the `lab` fixture's lab (`master`, port 6443),
    with Nodes for master and node01-03. Stopped with the lab."""
    return start_in_lab(lab)
