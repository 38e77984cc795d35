"""The built-in demo app (SPEC §3): print, reverse, sleep, payment, demo."""

from __future__ import annotations

import asyncio
import json
import logging
import random

from conveyor.app import Conveyor

app = Conveyor()
log = logging.getLogger("conveyor.demo")


@app.task(name="print")
def print_message(message: str = "") -> None:
    """Log `payload.message`."""
    log.info("print: %s", message)


@app.task
def reverse(text: str) -> str:
    """Return the string reversed."""
    return text[::-1]


@app.task
async def sleep(seconds: float = 1.0) -> float:
    """Sleep `seconds` (on the event loop) and return them."""
    await asyncio.sleep(float(seconds))
    return float(seconds)


@app.task
async def payment(order_id: str, amount: int | float | None = None) -> dict[str, object]:
    """Simulate charging `order_id`: a short wait for the payment provider."""
    await asyncio.sleep(random.uniform(0.05, 0.3))
    return {"order_id": order_id, "amount": amount, "charged": True}


class DemoFailure(RuntimeError):
    """The demo task's one-in-ten failure, to show retries."""


@app.task
async def demo(*args: object, **kwargs: object) -> str:
    """Sleep 1 to 4 s, return the reversed payload string (reversed JSON text for anything
    else) and fail one time in ten."""
    payload: object = args[0] if args else (kwargs or None)
    await asyncio.sleep(random.uniform(1.0, 4.0))
    if random.random() < 0.1:
        raise DemoFailure("simulated failure (one in ten)")
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return text[::-1]
