"""The API stand-in's tests read Kubernetes' own OpenAPI documents from the k8s.io/kubernetes
module in pikube's Go module cache; fetch it first (the go command, as `pikube lab up` does),
so that `pytest tests/unit` passes on its own on a machine whose cache is still empty."""

from __future__ import annotations

import pytest

from pikube.lab.kubeapi import openapi_source


@pytest.fixture(scope="session", autouse=True)
def kubernetes_openapi_documents() -> None:
    openapi_source.fetch()
