"""The periodic-job scheduler (SPEC §7): computes which ticks are due and hands each to the
store's compare-and-set. Every worker process of the app runs one; the store, not this
module, makes each tick enqueued once however many run (`Store.enqueue_periodic`).

- At start it registers the app's schedules (`Store.register_periodic`: new ones, and changed
  schedules or time zones, count their ticks from then on).
- It sleeps until the next tick of any schedule, wakes WAKE_AFTER_S after it, and offers the
  store every tick that came due since it last looked, oldest first: the first look (at
  start) offers only the most recent due tick, so after a pause of the whole fleet only the
  latest missed tick is enqueued, once. Later looks offer at most CATCH_UP ticks, so a tick
  that this running process could not enqueue in time (its event loop was busy, the store
  briefly unreachable) is enqueued late rather than lost, without a burst after an outage.
- Ticks are computed from this process's wall clock, as every run_at is. A process whose
  clock runs ahead offers ticks early, one behind offers them late (and finds them taken);
  neither can enqueue a tick twice: the compare-and-set only ever moves a schedule's last
  tick forward.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from conveyor.app import Conveyor
from conveyor.jobs import utcnow
from conveyor.periodic import Periodic, PeriodicState
from conveyor.stores import Store
from conveyor.worker.storecalls import StoreCalls

log = logging.getLogger("conveyor.worker")

# Wake this long after a tick, so that it has certainly passed on this process's clock.
WAKE_AFTER_S = 0.05
# Look at the wall clock at least this often, even when the next tick is far: a step of the
# clock (NTP, a suspended VM) then delays a tick by at most this much. asyncio sleeps on the
# monotonic clock.
MAX_SLEEP_S = 60.0
# At most this many ticks per schedule per look: ticks missed while this process ran.
CATCH_UP = 10
# After a failed store call, try again this soon (doubling up to the maximum).
RETRY_S, RETRY_MAX_S = 1.0, 30.0


class Scheduler:
    def __init__(
        self,
        app: Conveyor,
        store: Store,
        calls: StoreCalls,
        *,
        stopping: asyncio.Event,
        on_enqueued: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        # Built now: a periodic job whose task or payload does not fit fails the worker's
        # start with one line (InvalidJob / UnknownTask), not each tick.
        self.periodic: dict[str, Periodic] = app.periodic_jobs()
        self._store = store
        self._calls = calls
        self._stopping = stopping
        self._on_enqueued = on_enqueued
        self._clock = clock
        # Per schedule: the moment up to which its ticks were offered (None: not yet, so
        # only the most recent due tick is), and the latest tick known to be taken or the
        # moment before which none may be (no store call for those).
        self._looked: dict[str, datetime | None] = dict.fromkeys(self.periodic)
        self._floor: dict[str, datetime] = {}
        self._retry = RETRY_S

    async def run(self) -> None:
        """Register the schedules, then enqueue their ticks until `stopping` is set."""
        if not self.periodic:
            return
        while not await self.register():
            if await self._stop_within(self._backoff()):
                return
        while not self._stopping.is_set():
            wake = await self.run_once(self._clock())
            delay = MAX_SLEEP_S if wake is None else (wake - self._clock()).total_seconds()
            if await self._stop_within(min(max(delay, 0.0), MAX_SLEEP_S)):
                return

    async def register(self) -> bool:
        """Upsert the app's schedules into the store; False (logged) when it failed."""
        try:
            states = await self._calls(
                self._store.register_periodic, list(self.periodic.values()), now=self._clock()
            )
        except Exception as exc:
            log.warning("periodic jobs: registering the schedules failed: %s", exc)
            return False
        for state in states:
            self._note(state)
        self._retry = RETRY_S
        log.info(
            "periodic jobs: %s",
            ", ".join(
                f"{p.name} ({p.schedule.expression}, {p.schedule.timezone})"
                for p in self.periodic.values()
            ),
        )
        return True

    async def run_once(self, now: datetime) -> datetime | None:
        """Offer the store every schedule's due ticks as of `now`; return when to look next
        (the next tick of any schedule, a bit after it; sooner after a failed store call)."""
        failed = False
        for periodic in self.periodic.values():
            failed |= not await self._offer(periodic, now)
        wake = [
            tick
            for tick in (p.schedule.next_after(now) for p in self.periodic.values())
            if tick is not None
        ]
        next_look = min(wake) + _seconds(WAKE_AFTER_S) if wake else None
        if failed:
            retry = now + _seconds(self._backoff())
            next_look = retry if next_look is None else min(next_look, retry)
        else:
            self._retry = RETRY_S
        return next_look

    async def _offer(self, periodic: Periodic, now: datetime) -> bool:
        """Hand the schedule's due ticks to the store, oldest first; False on a store error
        (the ticks are offered again at the next look)."""
        looked = self._looked[periodic.name]
        ticks = periodic.schedule.ticks(looked, now, limit=1 if looked is None else CATCH_UP)
        floor = self._floor.get(periodic.name)
        for tick in ticks:
            if floor is not None and tick <= floor:
                continue  # taken already, or before the schedule counts
            try:
                result = await self._calls(self._store.enqueue_periodic, periodic, tick)
            except Exception as exc:
                log.warning("periodic %s: enqueueing tick %s failed: %s", periodic.name, tick, exc)
                return False
            if result is not None:
                log.info(
                    "periodic %s: enqueued job=%d tick=%s%s",
                    periodic.name,
                    result.job.id,
                    tick.isoformat(),
                    "" if result.created else " (an unfinished job held its unique_key)",
                )
                if result.created:
                    self._on_enqueued()
            self._floor[periodic.name] = tick
        self._looked[periodic.name] = now
        return True

    def _note(self, state: PeriodicState) -> None:
        # `since` itself may still be a tick (a tick at exactly the registration moment).
        floor = state.since - _seconds(1e-6)
        if state.last_tick is not None and state.last_tick > floor:
            floor = state.last_tick
        self._floor[state.name] = floor

    def _backoff(self) -> float:
        delay, self._retry = self._retry, min(self._retry * 2, RETRY_MAX_S)
        return delay

    async def _stop_within(self, seconds: float) -> bool:
        """Sleep `seconds`; True as soon as `stopping` is set."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
