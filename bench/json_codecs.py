"""JSON codecs for payloads and results: the json module's C accelerators called directly
(conveyor/jsontext.py) against orjson and msgspec, each wrapped to behave as Conveyor must
(NaN/Infinity refused, integers beyond 64 bits kept exact, json's own error messages).

    .venv/bin/python -m bench.json_codecs                    # every part, both stores
    .venv/bin/python -m bench.json_codecs --part micro --rounds 30
    .venv/bin/python -m bench.json_codecs --part batch --stores sqlite --rounds 15

Interleaved: every round runs each codec once, in a fresh random order, so a machine that
slows down during the run slows every codec alike; medians (and the best round) are
printed. `micro`: encode and decode of typical payloads, N calls per round. `batch`:
`Conveyor.enqueue_many` of 10,000 jobs into an empty store (a SQLite file / a scratch
PostgreSQL database `conveyor_bench_json` on $BENCH_PG_ADMIN), timed end to end. A codec whose
package is not installed is skipped: they are not Conveyor's dependencies
(`.venv/bin/pip install orjson msgspec` first; docs/performance.md, "JSON codecs").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor import Conveyor, jsontext

Codec = tuple[Callable[[object], str], Callable[[Any], object]]
_LONG_DIGITS = re.compile(r"\d{19}")
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


_stdlib_dumps, _stdlib_loads = jsontext.dumps, jsontext.loads
CODECS: dict[str, Codec] = {"jsontext": (jsontext.dumps, jsontext.loads)}

# The json module through its public API only: one encoder and one decoder, made once.
_public_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_public_decoder = json.JSONDecoder()


def public_loads(text: Any) -> object:
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    try:
        value, end = _public_decoder.raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)  # leading whitespace, or not JSON: json decides
    return value if end == len(text) else json.loads(text)


CODECS["json-public"] = (_public_encoder.encode, public_loads)

# Module-level functions, not closures: psycopg warns about closures as jsonb loaders.
try:
    import orjson
except ImportError:
    pass
else:

    def orjson_dumps(value: object) -> str:
        try:
            data = orjson.dumps(value)
        except TypeError:  # ints beyond 64 bits, non-str keys, surrogates, deep nesting
            return _stdlib_dumps(value)
        if b"null" in data:  # NaN and Infinity are written as null: json decides
            return _stdlib_dumps(value)
        return data.decode()

    def orjson_loads(text: Any) -> object:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _stdlib_loads(text)
        # orjson reads integers beyond 64 bits as floats: such text goes to json
        if _LONG_DIGITS.search(text if isinstance(text, str) else bytes(text).decode()):
            return _stdlib_loads(text)
        return value

    CODECS["orjson"] = (orjson_dumps, orjson_loads)

try:
    import msgspec
except ImportError:
    pass
else:
    _ms_encode = msgspec.json.Encoder().encode
    _ms_decode = msgspec.json.Decoder().decode
    _ms_errors = (msgspec.DecodeError, msgspec.ValidationError)

    def msgspec_dumps(value: object) -> str:
        try:
            data = _ms_encode(value)
        except (TypeError, ValueError, RecursionError):
            return _stdlib_dumps(value)
        if b"null" in data:  # NaN and Infinity are written as null: json decides
            return _stdlib_dumps(value)
        return data.decode()

    def msgspec_loads(text: Any) -> object:
        try:
            return _ms_decode(text)
        except _ms_errors:
            return _stdlib_loads(text)

    CODECS["msgspec"] = (msgspec_dumps, msgspec_loads)


PAYLOADS: dict[str, object] = {
    "string": "Test task 1",
    "order": {"order_id": "ORD-1001", "amount": 5},
    "nested": {
        "url": "https://example.com/a/b?c=d",
        "retries": 3,
        "tags": ["x", "y"],
        "meta": {"user": 42, "ratio": 0.25, "ok": True},
    },
    "with-null": {"order_id": "ORD-1001", "coupon": None},
    "1 KB": {f"field_{i}": (f"value {i} é" if i % 3 else i * 1.5) for i in range(40)},
}


def _behaviour_cases() -> dict[str, object]:
    import dataclasses
    import datetime
    import decimal
    import enum
    import uuid

    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int

    return {
        "NaN": math.nan,
        "[Infinity]": [math.inf],
        "2**64": 2**64,
        "-(2**63) - 1": -(2**63) - 1,
        "1e20": 1e20,
        "1e-7": 1e-7,
        "{1e20: 1} (a float key)": {1e20: 1},
        "{True: 1} (a bool key)": {True: 1},
        "datetime": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
        "UUID": uuid.UUID(int=1),
        "Decimal": decimal.Decimal("1.5"),
        "Enum": Colour.RED,
        "dataclass": Point(1),
        "set": {1},
        "bytes": b"x",
        "lone surrogate": "\ud800",
    }


def behaviour(codecs: dict[str, Codec]) -> None:
    """What each library does by itself (unwrapped) with values where JSON has no answer or
    json's answer is Conveyor's contract; and how each reads back integers beyond 64 bits."""
    raw: dict[str, Callable[[object], object]] = {"json": _stdlib_dumps}
    if "orjson" in codecs:
        raw["orjson"] = lambda v: orjson.dumps(v).decode()
    if "msgspec" in codecs:
        raw["msgspec"] = lambda v: _ms_encode(v).decode()
    print("behaviour: encoding by the bare libraries (json = Conveyor's contract)")
    print("| value | " + " | ".join(raw) + " |")
    print("|---|" + "---|" * len(raw))
    for name, value in _behaviour_cases().items():
        cells = []
        for encode in raw.values():
            try:
                text = str(encode(value)).encode("utf-8", "backslashreplace").decode()
                cells.append(f"`{text}`")
            except Exception as exc:
                cells.append(f"{type(exc).__name__}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    text = "[100000000000000000000]"  # PostgreSQL's jsonb writes 1e20 so
    readers: dict[str, Callable[[str], object]] = {"json": json.loads}
    if "orjson" in codecs:
        readers["orjson"] = orjson.loads
    if "msgspec" in codecs:
        readers["msgspec"] = _ms_decode
    print(f"decoding `{text}`: " + ", ".join(f"{k} {r(text)!r}" for k, r in readers.items()))


def _per_call_us(call: Callable[[Any], object], arg: object, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        call(arg)
    return (time.perf_counter_ns() - start) / n / 1000


def micro(codecs: dict[str, Codec], rounds: int, n: int) -> None:
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(rounds):
        order = list(codecs)
        random.shuffle(order)
        for name, payload in PAYLOADS.items():
            text = jsontext.dumps(payload)
            for codec in order:
                dumps, loads = codecs[codec]
                times.setdefault((name, codec, "enc"), []).append(_per_call_us(dumps, payload, n))
                times.setdefault((name, codec, "dec"), []).append(_per_call_us(loads, text, n))
    print(f"micro: {rounds} interleaved rounds of {n:,} calls; median (best) µs per call")
    print("| payload | codec | encode | decode |")
    print("|---|---|---|---|")
    for name in PAYLOADS:
        size = len(jsontext.dumps(PAYLOADS[name]).encode())
        for codec in codecs:
            enc, dec = times[(name, codec, "enc")], times[(name, codec, "dec")]
            print(
                f"| {name} ({size} B) | {codec} | {statistics.median(enc):.2f} ({min(enc):.2f})"
                f" | {statistics.median(dec):.2f} ({min(dec):.2f}) |"
            )


def _install(codec: Codec) -> None:
    # payloads.py, jobs.py and both stores call jsontext.dumps/loads through the module;
    # PostgreSQL connections bind jsontext.loads when they are made (after this).
    jsontext.dumps, jsontext.loads = codec  # type: ignore[assignment]


def _fresh_url(store: str, tmp: Path) -> str:
    if store == "sqlite":
        path = tmp / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS conveyor_bench_json WITH (FORCE)")
        conn.execute("CREATE DATABASE conveyor_bench_json")
    return PG_ADMIN.rsplit("/", 1)[0] + "/conveyor_bench_json"


def batch(codecs: dict[str, Codec], stores: list[str], rounds: int, jobs: int) -> None:
    original = (jsontext.dumps, jsontext.loads)
    kinds = {
        "string": lambda i: {"type": "demo", "payload": f"Test task {i}"},
        "object": lambda i: {"type": "demo", "payload": {"order_id": f"ORD-{i}", "amount": i}},
    }
    print(f"batch: enqueue_many of {jobs:,} jobs, {rounds} interleaved rounds")
    print("| store | payload | codec | jobs/s median | best | client CPU µs/job median (best) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for store in stores:
            for kind, make in kinds.items():
                items = [make(i) for i in range(jobs)]
                rates: dict[str, list[float]] = {c: [] for c in codecs}
                cpu_us: dict[str, list[float]] = {c: [] for c in codecs}
                for _ in range(rounds):
                    order = list(codecs)
                    random.shuffle(order)
                    for codec in order:
                        url = _fresh_url(store, Path(tmp))
                        _install(codecs[codec])
                        try:
                            with Conveyor(url) as app:
                                app.enqueue_many(items[:10])  # connect, warm up
                                start, cpu = time.perf_counter(), time.process_time()
                                app.enqueue_many(items)
                                cpu = time.process_time() - cpu
                                rates[codec].append(jobs / (time.perf_counter() - start))
                                cpu_us[codec].append(cpu / jobs * 1e6)
                        finally:
                            _install(original)
                for codec, values in rates.items():
                    print(
                        f"| {store} | {kind} | {codec} | {statistics.median(values):,.0f}"
                        f" | {max(values):,.0f} | {statistics.median(cpu_us[codec]):.1f}"
                        f" ({min(cpu_us[codec]):.1f}) |"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["behaviour", "micro", "batch", "all"], default="all")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    codecs = CODECS
    if args.part in ("behaviour", "all"):
        behaviour(codecs)
    if args.part in ("micro", "all"):
        micro(codecs, args.rounds, args.calls)
    if args.part in ("batch", "all"):
        batch(codecs, args.stores.split(","), args.rounds, args.jobs)


if __name__ == "__main__":
    main()
