"""One Logger, one Metrics, one (lazy) Tracer per container.

The Tracer pulls in the X-Ray SDK (~0.7 s of cold start), so HTTP functions never import it;
workers that want subsegments call `get_tracer()`."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger

from memlayer.settings import get_settings

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

logger = Logger(
    service=get_settings().service_name,
    level=get_settings().log_level,
    use_rfc3339=True,
)


@lru_cache(maxsize=1)
def get_metrics() -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace="memlayer", service=get_settings().service_name)


@lru_cache(maxsize=1)
def get_tracer() -> Any:
    from aws_lambda_powertools import Tracer

    return Tracer(service=get_settings().service_name)


# Powertools keeps one metric set per process; the local cloud runs several functions on
# threads of one process, so adds and flushes take turns.
_metrics_lock = threading.Lock()


def count(name: str, value: float = 1) -> None:
    """Records a metric; flushed as EMF when the worker's handler returns."""
    from aws_lambda_powertools.metrics import MetricUnit

    with _metrics_lock:
        get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush_metrics() -> None:
    with _metrics_lock:
        metrics = get_metrics()
        if metrics.provider.metric_set:
            metrics.flush_metrics()
