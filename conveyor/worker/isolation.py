"""Process isolation (SPEC §6): sync tasks run in child processes that can be killed.

`@app.task(isolated=True)`, or `worker --pool process` for every sync task of a worker, runs
the task in a child process of a small pool kept by this module:

- **At most one child per slot, started lazily and reused.** Each child runs one job at a
  time and talks to the worker over its own `multiprocessing` Pipe: a request is
  `(task name, module, args, kwargs)`, the reply the task's value (pickled: the executor
  encodes it with `encode_result` like a thread task's) or the failure as text (the
  child's own traceback, so an exception that cannot be pickled still arrives). A child
  that ran `--max-tasks-per-child` jobs, or whose resident memory after a job is over
  `--max-memory-per-child`, is asked to exit and a fresh one starts for the next job.
- **Why not multiprocessing.Pool / ProcessPoolExecutor:** neither can kill one hung task
  (a timeout, a cancel) and reuse its slot; Pool loses the task, ProcessPoolExecutor breaks
  as a whole when a worker dies. billiard (Celery's fork of multiprocessing) can, but it
  brings Celery's whole pool machinery for what is here a pipe and a pid per child.
- **forkserver, not fork:** the worker process has threads (the store calls, the lease
  renewal, the thread pool) and an event loop; `fork()` copies only the calling thread, so
  a lock another thread held (a logging handler's, sqlite3's, psycopg's, the allocator's)
  stays locked forever in the child, and the loop's file descriptors are shared. `spawn`
  is safe but starts a fresh interpreter and imports everything per child, far slower
  (docs/performance.md); the fork server is one clean single-threaded process, started
  once, that imports the app (`set_forkserver_preload`) and forks each child from that
  state.
- **Kill:** a run whose job timed out or was cancelled gets SIGTERM, then SIGKILL after
  `KILL_GRACE_S`; the thread that ran the exchange reaps it and only then reports the run
  as stopped. A timeout returns its outcome after that (the retry never overlaps the
  killed run); a cancelled run hands the executor a Future that completes then, and the
  pool keeps renewing the job's lease until it does (docs/architecture.md, "A lease
  belongs to a run").
- **Death:** a child that exits on its own during a job (`os._exit`, a segfault, the OOM
  killer) fails that job with `ChildDied: …` (retried as usual); the worker goes on and
  the next job starts a fresh child.
- **No orphans:** children ignore SIGINT (a terminal's ^C reaches the whole process group;
  the worker decides what happens to its jobs), are killed and reaped when the worker
  shuts down, and each holds a lifeline pipe to the worker: when the worker dies without
  a shutdown (SIGKILL), a thread in the child sees the pipe close and ends the child, so
  no task goes on running beside the run that recovers its job.

Async tasks are never isolated: they run on the worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.context import JobContext
    from conveyor.jobs import Job
    from conveyor.tasks import Task

log = logging.getLogger("conveyor.worker")

# SIGTERM first (a task may clean up), SIGKILL if it is still alive this much later.
KILL_GRACE_S = 5.0
# A child asked to exit (retired, or at shutdown) gets this long before it is killed.
EXIT_GRACE_S = 1.0
PROGRESS_EVERY_S = 0.25
# A child that has not loaded the app by then is killed (its job fails and is retried).
START_TIMEOUT_S = 60.0
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class IsolationConfig:
    """The worker's isolation settings (`--pool`, `--max-tasks-per-child`,
    `--max-memory-per-child`) and where a child finds the app (`--app`)."""

    every_sync_task: bool = False  # --pool process
    max_tasks_per_child: int | None = None  # None or 0: unlimited
    max_memory_per_child: float | None = None  # MiB; None or 0: unlimited
    app_spec: str | None = None  # module:attribute; None: the module of each task's function


class ChildFailed(Exception):
    """An isolated run ended without a value: the task raised (described in the child), its
    value cannot be stored, or its process died. `error` is the job's `last_error`."""

    def __init__(self, error: str, *, retryable: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"ChildDied: the task's process was killed by signal {-exitcode}{name}"
    return f"ChildDied: the task's process exited with code {exitcode}"


# -- the child side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ChildSpec:
    app_spec: str | None
    database_url: str | None
    max_attempts: int | None
    log_format: str | None  # the worker's log settings, for the task's own log lines
    log_level: int


def _rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak (getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _watch_lifeline(lifeline: Connection) -> None:
    """Runs on a daemon thread of the child: the worker holds the other end of `lifeline`
    and never writes to it, so recv() returns only when the worker has died (or closed it
    on retiring this child). Either way this child must not outlive it."""
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(70)


class _Tasks:
    """Finds a task by name in the child: in the app `--app` names, or, for a pool built
    without one (in-process tests), in a Conveyor app found in the task function's module."""

    def __init__(self, spec: _ChildSpec) -> None:
        self.spec = spec
        self.app: Conveyor | None = None
        if spec.app_spec is not None:
            from conveyor.loader import load_app

            self.app = self._configured(load_app(spec.app_spec))

    def _configured(self, app: Conveyor) -> Conveyor:
        # tasks that enqueue must reach the store the worker uses
        app.configure(database_url=self.spec.database_url, max_attempts=self.spec.max_attempts)
        return app

    def get(self, name: str, module: str) -> Task:
        from conveyor.app import Conveyor

        if self.app is not None:
            return self.app.tasks[name]
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Conveyor) and name in value.tasks:
                self.app = self._configured(value)
                return value.tasks[name]
        raise LookupError(f"no Conveyor app with a task {name!r} in module {module!r}")

    def close(self) -> None:
        if self.app is not None:
            self.app.close()


def _reply_value(send: Callable[[object], None], value: object, rss: int) -> None:
    """Send the task's value; one that cannot be pickled is sent as the JSON it stands
    for, or as the reason it cannot be stored (the same text a thread task gets)."""
    try:
        send(("ok", value, rss))
        return
    except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError):
        pass  # nothing was written: pickling happens before the write
    from conveyor import jsontext
    from conveyor.payloads import ResultError, encode_result

    try:
        send(("ok", jsontext.loads(encode_result(value)), rss))
    except ResultError as exc:
        send(("unstorable", f"ResultError: {exc}", rss))


class _Messages:
    """What a child sends about one job, one message at a time (the task may report
    progress from threads of its own): `current_job().progress(...)` at most every
    PROGRESS_EVERY_S (the worker writes it about once a second anyway), then the last one
    and the reply. Nothing after the reply: it would be taken for the next job's."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.sent = 0.0
        self.context: JobContext | None = None
        self.replied = False

    def progress(self, context: JobContext) -> None:
        if time.monotonic() - self.sent >= PROGRESS_EVERY_S:
            with self.lock:
                self._progress()

    def _progress(self) -> None:
        taken = None if self.context is None or self.replied else self.context.take_progress()
        if taken is not None:
            self.conn.send(("progress", taken, 0))
            self.sent = time.monotonic()

    def reply(self, message: object) -> None:
        with self.lock:
            self._progress()
            self.conn.send(message)
            self.replied = True


def _child_main(conn: Connection, lifeline: Connection, spec: _ChildSpec) -> None:
    """A child's life: load the app, say ready, then run one request at a time until told
    to exit (None) or the worker's end of the pipe closes."""
    # ^C in a terminal reaches the whole process group; the worker decides about its jobs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_watch_lifeline, args=(lifeline,), name="conveyor-lifeline", daemon=True
    ).start()
    from conveyor.context import JobContext, Retry, Snooze, bind
    from conveyor.worker.executor import describe_error

    try:
        if spec.log_format is not None:
            from conveyor.logs import setup_logging

            setup_logging(spec.log_format, logging.getLevelName(spec.log_level))
        tasks = _Tasks(spec)
    except BaseException as exc:
        conn.send(("broken", f"ChildStartError: {describe_error(exc)}", 0))
        return
    conn.send(("ready", os.getpid(), 0))
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            name, module, args, kwargs, job = request
            messages = _Messages(conn)
            try:
                task = tasks.get(name, module)
                store = tasks.app.store if tasks.app is not None else None
                messages.context = JobContext(
                    job, messages.progress, store.dependency_jobs if store else None
                )
                bind(messages.context)  # current_job(); `cancelled` stays False: it is killed
                value = task.func(*args, **kwargs)
            except (Snooze, Retry) as exc:  # rebuilt and raised in the worker
                messages.reply(("raise", exc, _rss_bytes()))
            except BaseException as exc:  # SystemExit, KeyboardInterrupt: that job's failure
                messages.reply(("error", describe_error(exc), _rss_bytes()))
            else:
                _reply_value(messages.reply, value, _rss_bytes())
    finally:
        tasks.close()


# -- the worker side --------------------------------------------------------------------------


class _Child:
    def __init__(self, process: BaseProcess, conn: Connection, lifeline: Connection) -> None:
        self.process = process
        self.pid: int = process.pid or 0
        self.conn = conn
        self.lifeline = lifeline  # the worker's end; closing it ends the child
        self.ready = False
        self.jobs = 0
        # written to (under the run's lock) to make the thread that waits on this child
        # kill it; a child that was woken is never reused, so no stale byte reaches a job
        self.wake_r, self.wake_w = os.pipe()

    def dead(self, timeout: float = 0) -> bool:
        try:
            return bool(wait([self.process.sentinel], timeout))
        except ValueError:  # closed: reaped and forgotten by the thread that owned it
            return True

    def close_fds(self) -> None:
        for conn in (self.conn, self.lifeline):
            conn.close()
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Run:
    """One isolated call. `kill()` may come from the loop at any moment: before the thread
    took a child (it then never starts one), while it runs (the thread kills the child), or
    after the reply (nothing to do)."""

    def __init__(
        self,
        request: tuple[str, str, tuple[object, ...], dict[str, object], Job],
        context: JobContext | None,
    ) -> None:
        self.request = request
        self.context = context  # the worker's side of the job's context: progress goes there
        self.on_sent: Callable[[], object] | None = None  # called once the child has the job
        self.lock = threading.Lock()
        self.child: _Child | None = None  # while its thread waits on a child
        self.kill_reason: str | None = None

    def kill(self, reason: str) -> None:
        with self.lock:
            if self.kill_reason is None:
                self.kill_reason = reason
            if self.child is not None:
                with contextlib.suppress(OSError):
                    os.write(self.child.wake_w, b"k")


@dataclass(frozen=True, slots=True)
class _Reply:
    kind: str  # ok, raise (Snooze, Retry), error, unstorable, died, start_failed, killed
    value: Any = None
    pid: int = 0


class ChildPool:
    """Up to `size` child processes running isolated tasks; see the module docstring."""

    def __init__(self, app: Conveyor, config: IsolationConfig, size: int) -> None:
        self.app = app
        self.config = config
        self.size = max(1, size)
        self.kill_grace = KILL_GRACE_S
        self._ctx = multiprocessing.get_context("forkserver")
        self._lock = threading.Lock()  # _idle, _children, _closing
        # Process.start() polls every child started before (multiprocessing's _cleanup) and
        # a forkserver child's exit status is read from its sentinel once: starts and joins
        # must not run on two threads at once, or one of them reads EOF (exit code 255).
        self._mp_lock = threading.Lock()
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._closing = False
        self._threads: ThreadPoolExecutor | None = None
        self._spec: _ChildSpec | None = None
        self.started = 0  # children started, for tests and the logs

    def isolates(self, task: Task) -> bool:
        return not task.is_async and (self.config.every_sync_task or task.options.isolated)

    # -- the loop's side ----------------------------------------------------------------------
    async def call(
        self,
        task: Task,
        job: Job,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        *,
        timeout: float | None,
        on_cancel: Callable[[Future[object]], None],
    ) -> object:
        """Run `task` in a child. A timeout kills the child and raises TimeoutError once it
        is dead; a cancellation kills it and re-raises at once, after handing `on_cancel`
        a Future that completes when the child is dead (so the job's lease outlives it)."""
        from conveyor.context import current_job

        try:
            context: JobContext | None = current_job()
        except LookupError:
            context = None
        run = _Run((task.name, task.func.__module__, args, kwargs, job), context)
        loop = asyncio.get_running_loop()
        scope: asyncio.Timeout | None = None
        live = True
        if timeout is not None:
            # The timeout counts from when a child has the job: starting a child (the first
            # one also starts the fork server) is not the task's time. Set before the thread
            # starts, which may send at once to an idle child; `arm` runs on the loop, after
            # this coroutine has entered the scope below.
            def arm() -> None:
                if live and scope is not None and not scope.expired():
                    scope.reschedule(loop.time() + timeout)

            run.on_sent = lambda: loop.call_soon_threadsafe(arm)
        future: Future[object] = self._executor().submit(self._exchange, run)
        waiter = asyncio.wrap_future(future)
        # retrieved even when nobody awaits it any more (a cancelled call)
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            async with asyncio.timeout(None) as scope:
                try:
                    reply = await asyncio.shield(waiter)  # the shield keeps `future` running
                finally:
                    live = False
        except TimeoutError:
            run.kill("its timeout passed")
            try:
                await asyncio.wait([waiter])  # until the child is dead and reaped
            except asyncio.CancelledError:
                on_cancel(future)
                raise
            raise
        except asyncio.CancelledError:
            run.kill("its job was stopped")
            on_cancel(future)
            raise
        assert isinstance(reply, _Reply)
        if reply.kind == "ok":
            return reply.value
        if reply.kind == "raise":  # Snooze, Retry
            assert isinstance(reply.value, BaseException)
            raise reply.value
        if reply.kind == "unstorable":
            raise ChildFailed(str(reply.value), retryable=False)
        if reply.kind == "died":
            raise ChildFailed(describe_exit(reply.value))
        if reply.kind == "killed":  # only at shutdown: close() stopped it
            raise ChildFailed("ChildDied: the task's process was stopped by the worker")
        raise ChildFailed(str(reply.value))  # error, start_failed

    def _executor(self) -> ThreadPoolExecutor:
        if self._threads is None:
            # one thread per running call, plus one per child still being killed or retired
            # after its slot was given to the next job
            self._threads = ThreadPoolExecutor(
                max_workers=2 * self.size + 1, thread_name_prefix="conveyor-isolation"
            )
        return self._threads

    # -- a thread's side: one exchange with one child -------------------------------------------
    def _exchange(self, run: _Run) -> _Reply:
        for _ in range(2):  # a reused child found dead before the request reached it: once more
            try:
                child = self._take_idle()
            except RuntimeError as exc:
                return _Reply("start_failed", f"ChildStartError: {exc}")
            if child is None:
                with run.lock:
                    if run.kill_reason is not None:
                        return _Reply("killed")
                try:
                    child = self._start_child()
                except Exception as exc:
                    return _Reply("start_failed", f"ChildStartError: {exc}")
            reply = self._exchange_with(child, run)
            if reply is not None:
                return reply
        return _Reply("start_failed", "ChildStartError: no child process could take the job")

    def _exchange_with(self, child: _Child, run: _Run) -> _Reply | None:
        with run.lock:
            if run.kill_reason is None:
                run.child = child
        if run.child is None:  # stopped before it started
            self._put_back(child) if child.ready else self._kill(child, "")
            return _Reply("killed")
        try:
            if not child.ready:
                first = self._next_message(child, run, START_TIMEOUT_S)
                if isinstance(first, _Reply):
                    return first
                if first[0] != "ready":
                    self._retire(child)
                    return _Reply("start_failed", first[1])
                child.ready = True
            try:
                child.conn.send(run.request)
                if run.on_sent is not None:
                    with contextlib.suppress(RuntimeError):  # the loop closed: no timeout
                        run.on_sent()
            except (OSError, EOFError):
                if child.jobs == 0:  # a fresh child that died: not worth another
                    return self._died(child)
                self._died(child)
                return None  # the job never reached it: start another
            message = self._next_message(child, run)
            if isinstance(message, _Reply):
                return message
        finally:
            with run.lock:
                run.child = None
                killed = run.kill_reason is not None
        kind, value, rss = message
        child.jobs += 1
        if killed:  # too late to matter; a wake byte may be waiting in its pipe
            self._retire(child)
        elif reason := self._worn_out(child, rss):
            log.info("replacing task process %d: %s", child.pid, reason)
            try:  # on another thread: the job's outcome need not wait for the exit
                self._executor().submit(self._retire, child)
            except RuntimeError:  # shutting down
                self._retire(child)
        else:
            self._put_back(child)
        return _Reply(kind, value, child.pid)

    def _next_message(
        self, child: _Child, run: _Run, timeout: float | None = None
    ) -> tuple[str, Any, int] | _Reply:
        """The child's next message (progress reports handed to the job's context on the
        way), or the reply for a child that died, was killed or did not say it was ready
        within `timeout`."""
        while True:
            ready = wait([child.conn, child.process.sentinel, child.wake_r], timeout)
            if not ready:
                self._kill(child, f"it did not start within {timeout:g}s")
                return _Reply("start_failed", f"ChildStartError: no answer within {timeout:g}s")
            if child.conn not in ready:
                break
            try:
                message: tuple[str, Any, int] = child.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # a value the worker cannot unpickle (read whole: the
                # pipe is still in step, the child can be reused)
                return ("unstorable", f"ResultError: the task's value could not be read: {exc}", 0)
            if message[0] != "progress":
                return message
            if run.context is not None:
                with contextlib.suppress(Exception):  # checked in the child already
                    run.context.progress(*message[1])
        with run.lock:
            stopping = run.kill_reason
        if stopping is not None:  # woken, or (at shutdown) already killed
            self._kill(child, stopping)
            return _Reply("killed", pid=child.pid)
        return self._died(child)

    def _worn_out(self, child: _Child, rss: int) -> str | None:
        max_tasks = self.config.max_tasks_per_child
        if max_tasks and child.jobs >= max_tasks:
            return f"it ran {child.jobs} jobs (--max-tasks-per-child {max_tasks})"
        max_memory = self.config.max_memory_per_child
        if max_memory and rss > max_memory * MIB:
            return (
                f"its memory ({rss / MIB:.0f} MiB) is over --max-memory-per-child "
                f"({max_memory:g} MiB)"
            )
        return None

    # -- children ---------------------------------------------------------------------------------
    def _child_spec(self) -> _ChildSpec:
        if self._spec is None:
            root = logging.getLogger()
            formatter = root.handlers[0].formatter if root.handlers else None
            fmt = None
            if formatter is not None and type(formatter).__module__ == "conveyor.logs":
                fmt = "json" if type(formatter).__name__ == "JsonFormatter" else "text"
            self._spec = _ChildSpec(
                app_spec=self.config.app_spec,
                database_url=self.app.database_url,
                max_attempts=self.app.default_max_attempts,
                log_format=fmt,
                log_level=root.level,
            )
            # the fork server imports these once; each child is forked with them loaded
            # (and the worker's main script, which each child would otherwise run again
            # as __mp_main__: the `conveyor` script imports the whole CLI)
            preload = ["__main__", "conveyor.worker.isolation"]
            if self.config.app_spec is not None:
                preload.append(self.config.app_spec.partition(":")[0])
            with contextlib.suppress(ValueError):
                self._ctx.set_forkserver_preload(preload)
        return self._spec

    def _start_child(self) -> _Child:
        spec = self._child_spec()
        conn, child_conn = self._ctx.Pipe()
        life_r, life_w = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child_main,
            args=(child_conn, life_r, spec),
            name="conveyor-task",
            daemon=False,  # a daemonic process may not start processes of its own
        )
        try:
            with self._mp_lock:
                process.start()
        except BaseException:
            for c in (conn, child_conn, life_r, life_w):
                c.close()
            raise
        finally:
            child_conn.close()
            life_r.close()
        child = _Child(process, conn, life_w)
        with self._lock:
            closing = self._closing
            if not closing:
                self._children.add(child)
                self.started += 1
        if closing:
            self._kill(child, "")
            raise RuntimeError("the worker is shutting down")
        log.debug("started task process %d", child.pid)
        return child

    def _take_idle(self) -> _Child | None:
        while True:
            with self._lock:
                if self._closing:
                    raise RuntimeError("the worker is shutting down")
                if not self._idle:
                    return None
                child = self._idle.pop()
            if not child.dead():
                return child
            self._died(child)  # died while idle (killed from outside): forget it

    def _put_back(self, child: _Child) -> None:
        with self._lock:
            if not self._closing:
                self._idle.append(child)
                return
        self._retire(child)

    def _forget(self, child: _Child) -> int | None:
        with self._mp_lock:
            child.process.join()
            exitcode = child.process.exitcode
            child.process.close()  # its sentinel and the rest, now rather than at GC
        child.close_fds()
        with self._lock:
            self._children.discard(child)
        return exitcode

    def _died(self, child: _Child) -> _Reply:
        exitcode = self._forget(child)
        log.warning("task process %d died: %s", child.pid, describe_exit(exitcode))
        return _Reply("died", exitcode, child.pid)

    def _kill(self, child: _Child, reason: str) -> None:
        """SIGTERM, SIGKILL after the grace, reap. Only the thread that owns the child
        calls this, so its pid cannot have been reused yet."""
        if reason:
            log.warning("killing task process %d: %s", child.pid, reason)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        if not child.dead(self.kill_grace):
            log.warning(
                "task process %d still alive %gs after SIGTERM: SIGKILL", child.pid, self.kill_grace
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        self._forget(child)

    def _retire(self, child: _Child) -> None:
        """Ask an idle child to exit; kill it if it does not within EXIT_GRACE_S."""
        with contextlib.suppress(OSError, EOFError):
            child.conn.send(None)
        if not child.dead(EXIT_GRACE_S):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        self._forget(child)

    # -- shutdown ---------------------------------------------------------------------------------
    def close(self) -> None:
        """At worker exit (every job is stopped or handed back by now): kill children still
        running a job, ask idle ones to exit, reap them all. Bounded by about EXIT_GRACE_S."""
        with self._lock:
            self._closing = True
            idle, self._idle = self._idle, []
            busy = [c for c in self._children if c not in idle]
        for child in busy:  # their runs were cancelled; their threads reap them
            if not child.dead():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        for child in idle:
            with contextlib.suppress(OSError, EOFError):
                child.conn.send(None)
        deadline = time.monotonic() + EXIT_GRACE_S
        for child in idle:
            if not child.dead(max(0.0, deadline - time.monotonic())):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            self._forget(child)
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
        with self._lock:  # a retirement that was still queued: no thread owns these now
            left = list(self._children)
        for child in left:
            if not child.dead():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            self._forget(child)

    def pids(self) -> list[int]:
        with self._lock:
            return sorted(c.pid for c in self._children)
