"""Task: a registered function with its options, and the payload → arguments rule."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.backoff import BackoffPolicy, exponential_backoff
from conveyor.jobs import Job

if TYPE_CHECKING:
    from conveyor.app import Conveyor

_MISSING: Any = object()


def call_arguments(payload: object) -> tuple[tuple[object, ...], dict[str, object]]:
    """SPEC §1: a JSON object → keyword arguments; null → none; anything else → one positional."""
    if payload is None:
        return (), {}
    if type(payload) is dict or isinstance(payload, Mapping):  # dict first: the ABC check is slow
        return (), dict(payload)
    return (payload,), {}


@dataclass(frozen=True, slots=True)
class TaskOptions:
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    backoff: BackoffPolicy = exponential_backoff


class Task:
    """What `@app.task` returns: still callable like the function, plus `.enqueue(...)`."""

    def __init__(self, app: Conveyor, func: Callable[..., Any], name: str, options: TaskOptions):
        self.app = app
        self.func = func
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(func)
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def enqueue(
        self,
        payload: Any = _MISSING,
        /,
        *,
        priority: int | None = None,
        queue: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        connection: object | None = None,
        **kwargs: Any,
    ) -> Job:
        """Enqueue one run: `task.enqueue("hello")`, `task.enqueue({"a": 1})` or
        `task.enqueue(a=1)` (keyword arguments become the payload object)."""
        if payload is _MISSING:
            payload = kwargs or None
        elif kwargs:
            raise TypeError("give the payload either positionally or as keyword arguments")
        return self.app.enqueue(
            self.name,
            payload,
            priority=priority,
            queue=queue,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            max_attempts=max_attempts,
            connection=connection,
        )
