"""HTTP figures: enqueue requests/s through `conveyor serve` (single job, and batches of 100)
with a keep-alive client, and enqueue-to-start latency through HTTP with idle workers.

    .venv/bin/python -m bench.http --stores sqlite,postgres
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.run import CONVEYOR, ROOT, fresh_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [
            CONVEYOR,
            "serve",
            "--app",
            "bench.app:app",
            "--database-url",
            url,
            "--port",
            str(port),
            "--workers",
            "10",
            "--fetch-limit",
            "10",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(client: httpx.Client) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("server did not start")


def measure(store: str, tmp: Path, n_single: int, n_batches: int, n_latency: int) -> tuple:
    url = fresh_url(store, tmp)
    port = free_port()
    proc = serve(url, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_ready(client)
            t0 = time.perf_counter()
            for _ in range(n_single):
                client.post("/jobs", json={"type": "noop"}).raise_for_status()
            single = n_single / (time.perf_counter() - t0)
            body = {"jobs": [{"type": "noop"}] * 100}
            t0 = time.perf_counter()
            for _ in range(n_batches):
                client.post("/jobs/batch", json=body).raise_for_status()
            batch = n_batches * 100 / (time.perf_counter() - t0)
            # let the pool drain what was just enqueued, then go idle
            deadline = time.time() + 120
            while time.time() < deadline:
                queues = client.get("/metrics").json()["queues"]
                if not any(c.get("pending") or c.get("processing") for c in queues.values()):
                    break
                time.sleep(0.1)
            time.sleep(1.0)
            sent = []
            for _ in range(n_latency):
                t = time.time()
                sent.append((client.post("/jobs", json={"type": "noop"}).json()["id"], t))
                time.sleep(0.02)
            lat = []
            for job_id, t in sent:
                while (job := client.get(f"/jobs/{job_id}").json())["status"] != "done":
                    time.sleep(0.01)
                lat.append((float(job["result"]) - t) * 1000)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lat.sort()
    return single, batch, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--single-n", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--latency-n", type=int, default=200)
    args = parser.parse_args()
    print(
        "| store | POST /jobs req/s | POST /jobs/batch (100) jobs/s | HTTP enqueue-to-start "
        "p50 ms | p99 ms |"
    )
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmpdir:
        for store in args.stores.split(","):
            single, batch, p50, p99 = measure(
                store, Path(tmpdir), args.single_n, args.batches, args.latency_n
            )
            print(f"| {store} | {single:,.0f} | {batch:,.0f} | {p50:.1f} | {p99:.1f} |", flush=True)
            print(f"# {store} done", file=sys.stderr)


if __name__ == "__main__":
    main()
