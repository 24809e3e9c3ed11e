"""Prometheus metrics. Under gunicorn every worker is a process: with PROMETHEUS_MULTIPROC_DIR
set (the serve image's gunicorn config does it) the counts of all workers are summed."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    def __init__(self) -> None:
        # One registry per app, so tests can build many apps in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mljobs_requests", "HTTP requests by route and status code", ["route", "code"], registry=r)
        self.latency = Histogram("mljobs_request_duration_seconds", "Time to answer, by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("mljobs_predictions", "Records scored", registry=r)
        self.model = Gauge("mljobs_model_info", "1 for the model version being served", ["name", "version"],
                           multiprocess_mode="liveall", registry=r)
        self.follow_errors = Counter("mljobs_model_follow_errors", "Rounds of following the alias that failed", registry=r)
        self.load_failures = Counter("mljobs_model_load_failures", "Model versions refused or failed to load", ["version"], registry=r)
        self.model_loads = Counter("mljobs_model_loads", "Model versions loaded (first use, a new alias target, after an unload)",
                                   ["model"], registry=r)
        self.model_unloads = Counter("mljobs_model_unloads", "Models unloaded to keep within the server's bounds", ["model"], registry=r)

    def serving(self, name: str, version: str | None, previous: str | None) -> None:
        if previous is not None:
            self.model.labels(name, previous).set(0)
        if version is not None:
            self.model.labels(name, version).set(1)

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
