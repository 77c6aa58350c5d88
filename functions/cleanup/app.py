"""Cleanup (EventBridge Scheduler, hourly): expired records, lost captures, orphan uploads,
dead-letter depths. A failed run raises, so the Scheduler retries it and then dead-letters
the event (CleanupDLQ, alarmed)."""

from typing import Any

from memlayer import secrets
from memlayer.observability import flush_metrics, logger, traced
from memlayer.runloop import run
from memlayer.services.cleanup import run_cleanup


def _run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.info("cleanup scheduled", schedule=event.get("resources") or event.get("source"))
    secrets.refresh(context.function_name)  # the database URL, on Supabase
    try:
        report = run(run_cleanup())  # the container's loop, which its cached clients are bound to
    finally:
        flush_metrics()  # under the metrics lock, like the workers
    return report


handler = traced(_run)
