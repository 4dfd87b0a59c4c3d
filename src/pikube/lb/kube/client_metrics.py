"""MetalLB's `metallb_k8s_client_*` metrics, which every speaker fed by the Kubernetes API
exports (the layer-2 and the BGP source alike), and the log line when the API goes away."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pikube.lb.metrics import Family, Registry

log = logging.getLogger("pikube.source")


@dataclass(frozen=True)
class ClientMetrics:
    loaded: Family
    stale: Family
    updates: Family
    update_errors: Family

    @classmethod
    def on(cls, registry: Registry) -> ClientMetrics:
        return cls(
            loaded=registry.gauge(
                "metallb_k8s_client_config_loaded_bool",
                "1 if the MetalLB configuration was successfully loaded at least once",
            ),
            stale=registry.gauge(
                "metallb_k8s_client_config_stale_bool",
                "1 if running on a stale configuration, because the Kubernetes API is unreachable",
            ),
            updates=registry.counter(
                "metallb_k8s_client_updates_total",
                "Number of k8s object updates that were processed",
            ),
            update_errors=registry.counter(
                "metallb_k8s_client_update_errors_total",
                "Number of k8s object updates that failed for some reason",
            ),
        )


def report_stale(metrics: ClientMetrics | None, stale: bool) -> None:
    """The informer's word that the API stopped (or started again) answering."""
    if metrics is not None:
        metrics.stale.set(1 if stale else 0)
    if stale:
        log.warning("the Kubernetes API is unreachable: announcing the last known state")
    else:
        log.info("the Kubernetes API answers again")
