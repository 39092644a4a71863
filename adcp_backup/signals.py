"""Signals the services send when a backup, restore or prune finishes or fails, and the decorator that sends them.

Every signal carries ``arguments`` (the keyword arguments the service was called with); the success signals
add ``result`` (the service's frozen dataclass), the failure signals ``exception``. Receivers run after the
work is done and cannot change its outcome: an exception in a receiver is logged, never raised.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.dispatch import Signal

logger = logging.getLogger(__name__)

backup_created = Signal()
backup_failed = Signal()
restore_finished = Signal()
restore_failed = Signal()
backup_pruned = Signal()
prune_failed = Signal()
backup_deleted = Signal()
delete_failed = Signal()
upload_accepted = Signal()
upload_refused = Signal()
# A restore drill: ``drill_finished`` carries ``result`` (restorable); ``drill_failed`` carries ``result`` when the
# backup did not restore, or ``exception`` (and ``result=None``) when the drill could not run.
drill_finished = Signal()
drill_failed = Signal()

F = TypeVar("F", bound=Callable[..., Any])


def send(signal: Signal, sender: Any, **named: Any) -> None:
    """Send ``signal`` to every receiver; a receiver that raises is logged and the others still run."""
    for receiver, response in signal.send_robust(sender=sender, **named):
        if isinstance(response, Exception):
            logger.error("A receiver of an adcp_backup signal failed (%s): %s", getattr(receiver, "__name__", receiver),
                         response, exc_info=response)


def reported(success: Signal, failure: Signal) -> Callable[[F], F]:
    """Decorate a service so that it sends ``success`` with its result, or ``failure`` with its exception."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                send(failure, func, arguments=dict(kwargs), exception=exc)
                raise
            send(success, func, arguments=dict(kwargs), result=result)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
