"""One Logger, one Metrics, one (lazy) Tracer per container.

The Tracer pulls in the X-Ray SDK (~0.7 s of cold start), so HTTP functions never import it
(Lambda's active tracing still records their invocations); the workers trace their handler and
their AWS calls with `traced()` (unless tracing is disabled, as in the local cloud). Handlers
log with the Lambda context (`inject_lambda_context`); HTTP logs carry the request id as
correlation id, worker logs the message id."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from memlayer.settings import get_settings

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
Handler = Callable[[dict[str, Any], Any], Any]

logger = Logger(
    service=get_settings().service_name,
    level=get_settings().log_level,
    use_rfc3339=True,
)


@lru_cache(maxsize=1)
def get_metrics() -> Any:
    settings = get_settings()
    return Metrics(namespace=settings.metrics_namespace, service=settings.service_name)


@lru_cache(maxsize=1)
def get_tracer() -> Any:
    # lazy: the Tracer loads aws_xray_sdk; only workers trace, HTTP functions never import it
    from aws_lambda_powertools import Tracer

    return Tracer(service=get_settings().service_name)


def traced(handler: Handler) -> Handler:
    """A worker handler with the Lambda context in its logs and an X-Ray segment (its AWS calls
    as subsegments; responses are not recorded, they hold user data). With tracing disabled a
    Tracer would record nothing, so none is built: the X-Ray SDK it imports makes a botocore
    client of its own at import (≈ 0.25 s of the analyze worker's 0.8 s init, in CPU)."""
    if not get_settings().trace_disabled:
        handler = get_tracer().capture_lambda_handler(handler, capture_response=False)
    return logger.inject_lambda_context(handler)


# Powertools keeps one metric set per process; the local cloud runs several functions on
# threads of one process, so adds and flushes take turns.
_metrics_lock = threading.Lock()


def count(name: str, value: float = 1) -> None:
    """Records a metric; flushed as EMF when the worker's handler returns."""
    with _metrics_lock:
        get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush_metrics() -> None:
    with _metrics_lock:
        metrics = get_metrics()
        if metrics.provider.metric_set:
            metrics.flush_metrics()
