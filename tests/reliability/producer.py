"""A producer process for the SQLite contention test:

    python -m tests.reliability.producer DATABASE_URL FIRST_SEQ COUNT

enqueues `record` jobs with seqs FIRST_SEQ.. one by one (first half), then via enqueue_many
in batches of 50 (second half), as fast as it can. Exits non-zero on any error."""

from __future__ import annotations

import sys

from conveyor import Conveyor

BATCH = 50


def main(url: str, first: int, count: int) -> None:
    half = count // 2
    with Conveyor(url) as app:
        for seq in range(first, first + half):
            app.enqueue("record", {"seq": seq})
        for start in range(first + half, first + count, BATCH):
            stop = min(start + BATCH, first + count)
            batch = [{"type": "record", "payload": {"seq": s}} for s in range(start, stop)]
            app.enqueue_many(batch)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
