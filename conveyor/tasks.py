"""Task: a registered function with its options, and the payload → arguments rule."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.backoff import BackoffPolicy, exponential_backoff
from conveyor.errors import InvalidJob
from conveyor.jobs import Job
from conveyor.payloads import decode

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


# What a check binds for a payload that is passed as one positional argument.
_ONE_ARGUMENT = object()
_NULL_HINT = "a null payload passes no arguments"
_POSITIONAL_HINT = "a payload that is not an object or null is passed as one positional argument"
_NAMES_SHOWN = 5
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
)


class PayloadCheck:
    """Refuses, at enqueue, a payload the task's function cannot be called with (SPEC §1's
    payload → arguments rule against its signature), so a typo fails at once instead of
    after every retry. Called with the payload and its JSON text, it raises InvalidJob naming
    the task and the argument.

    The signature is read once, at registration. The verdicts for a null payload and for a
    one-positional payload are `Signature.bind`'s, taken then. An object payload's keys are
    compared with the parameters' names, two set comparisons (cheaper than calling `bind` on
    every enqueue: docs/performance.md, "Signature check at enqueue"), and a refusal
    is confirmed by `bind` on the payload as the worker will see it (decoded from its JSON:
    object keys are strings). A callable whose signature cannot be read accepts any payload."""

    __slots__ = ("_accepted", "_by_place", "_none", "_one", "_required", "_signature", "_task")

    def __init__(self, task: str, func: Callable[..., Any]) -> None:
        self._task = task
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins and extension callables
            signature = None
        self._signature = signature
        params = list(signature.parameters.values()) if signature is not None else []
        by_name = [p for p in params if p.kind in _BY_NAME]
        # What an object payload's keys must include, and may include (None: any, **kwargs).
        self._required = frozenset(p.name for p in by_name if p.default is p.empty)
        self._accepted: frozenset[str] | None = (
            None
            if signature is None or any(p.kind is p.VAR_KEYWORD for p in params)
            else frozenset(p.name for p in by_name)
        )
        # Positional-only parameters without a default: no object payload can give them.
        self._by_place = tuple(
            p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty
        )
        self._none = self._verdict((), _NULL_HINT)
        self._one = self._verdict((_ONE_ARGUMENT,), _POSITIONAL_HINT)

    def __call__(self, payload: object, payload_json: str) -> None:
        if payload is None:
            if self._none is not None:
                raise InvalidJob(self._none)
        elif isinstance(payload, dict):  # an encoded payload: other mappings are not JSON
            keys = payload.keys()
            if (
                self._by_place
                or not keys >= self._required
                or (self._accepted is not None and not keys <= self._accepted)
            ):
                self._refuse_object(payload_json)
        elif self._one is not None:
            raise InvalidJob(self._one)

    def _verdict(self, args: tuple[object, ...], hint: str) -> str | None:
        """The refusal message for a call with `args` and no keywords, or None if it binds."""
        if self._signature is None:
            return None
        try:
            self._signature.bind(*args)
        except TypeError as exc:
            params = list(self._signature.parameters.values())
            positional = [p for p in params if p.kind in _POSITIONAL]
            if args and not positional:
                return self._message(["takes no positional argument"], hint)
            taken = positional[0].name if args else None
            missing = [
                p.name
                for p in params
                if p.default is p.empty and p.kind not in _VARIADIC and p.name != taken
            ]
            return self._message(self._names("missing required argument", missing), hint, exc)
        return None

    def _refuse_object(self, payload_json: str) -> None:
        """Raise InvalidJob unless `bind` takes the payload as the worker will see it."""
        assert self._signature is not None  # an unreadable signature requires and limits nothing
        payload = decode(payload_json)
        assert isinstance(payload, dict)
        try:
            self._signature.bind(**payload)
        except TypeError as exc:
            accepted, by_place = self._accepted, self._by_place
            unexpected = [
                k
                for k in payload
                if accepted is not None and k not in accepted and k not in by_place
            ]
            missing = [n for n in self._signature.parameters if n in self._required]
            missing = [n for n in missing if n not in payload]
            parts = self._names("positional-only argument", list(by_place))
            parts = [f"{part} cannot be given by name" for part in parts]
            parts += self._names("unexpected argument", unexpected)
            parts += self._names("missing required argument", missing)
            hint = "a JSON object payload is passed as keyword arguments"
            raise InvalidJob(self._message(parts, hint, exc)) from None

    def _message(self, parts: list[str], hint: str, exc: TypeError | None = None) -> str:
        what = ", ".join(parts) if parts else str(exc)
        return f"payload does not fit task {self._task!r}: {what} ({hint})"

    @staticmethod
    def _names(label: str, names: list[str]) -> list[str]:
        if not names:
            return []
        shown = ", ".join(repr(n if len(n) <= 60 else n[:57] + "...") for n in names[:_NAMES_SHOWN])
        more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
        return [f"{label}{'s' if len(names) > 1 else ''} {shown}{more}"]


@dataclass(frozen=True, slots=True)
class TaskOptions:
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    backoff: BackoffPolicy = exponential_backoff
    # run in a child process of the worker, killed at its timeout or cancel (SPEC §6)
    isolated: bool = False


class Task:
    """What `@app.task` returns: still callable like the function, plus `.enqueue(...)`."""

    def __init__(self, app: Conveyor, func: Callable[..., Any], name: str, options: TaskOptions):
        self.app = app
        self.func = func
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(func)
        if options.isolated and self.is_async:
            raise InvalidJob(
                f"task {name!r}: isolated=True is for sync functions; an async task runs on "
                "the worker's event loop"
            )
        self.check_payload = PayloadCheck(name, func)
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
        concurrency_key: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_dependency_failure: str | None = None,
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
            concurrency_key=concurrency_key,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )
