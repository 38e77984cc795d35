"""Contract: payload and result text is stored and read back exactly; only a real NUL
(U+0000), which PostgreSQL cannot store, is refused, never text that merely spells its
JSON escape (a backslash, then u0000)."""

from __future__ import annotations

import pytest

from conveyor import jsontext
from conveyor.errors import InvalidJob
from conveyor.payloads import encode_result
from conveyor.validation import new_job
from tests.support.factories import claim_one

SPELLED = "\\u0000"  # six characters: \ u 0 0 0 0
TEXTS = [SPELLED, "\\" + SPELLED, "a" + SPELLED + "b" + SPELLED, SPELLED + "\\", "\\\\\\\\u0000"]
PAYLOAD = {text: [text, {"nested": text}] for text in TEXTS} | {"all": TEXTS}


def test_text_spelling_a_nul_escape_round_trips_in_payload_result_and_names(store):
    job = store.enqueue(new_job(SPELLED, PAYLOAD, queue=SPELLED, unique_key=SPELLED)).job
    assert (job.type, job.queue, job.unique_key, job.payload) == (
        SPELLED,
        SPELLED,
        SPELLED,
        PAYLOAD,
    )
    back = store.get_job(job.id)
    assert back == job
    assert isinstance(back.payload, dict)  # (PostgreSQL's jsonb may reorder the keys)
    assert sorted(back.payload) == sorted(PAYLOAD) and back.payload["all"] == TEXTS

    claimed = claim_one(store)
    assert claimed.payload == PAYLOAD
    assert store.complete(claimed.lease_ref(), encode_result(PAYLOAD))
    done = store.get_job(job.id)
    assert done is not None and done.result == PAYLOAD


def test_text_spelling_a_nul_escape_round_trips_through_batches(store):
    for keyed in (False, True):
        batch = [
            new_job("t", text, unique_key=f"{keyed}{text}" if keyed else None) for text in TEXTS
        ]
        results = store.enqueue_many(batch)
        assert [r.job.payload for r in results] == TEXTS
        for result, text in zip(results, TEXTS, strict=True):
            back = store.get_job(result.job.id)
            assert back is not None and back.payload == text
            assert jsontext.dumps(back.payload) == jsontext.dumps(text)


@pytest.mark.parametrize(
    "payload",
    ["\x00", "a\x00b", "\\\x00", {"k\x00": 1}, [SPELLED, {"deep": "\x00"}]],
    ids=ascii,
)
def test_a_real_nul_is_refused_before_anything_is_stored(store, payload):
    with pytest.raises(InvalidJob, match="payload contains a NUL character"):
        store.enqueue(new_job("t", payload))
    assert store.stats() == {}


NUMBERS = [2**64, -(2**63) - 1, 10**30, -(10**30), 1e20, 1e-7, 0.1, 2**53 + 1]


def test_integers_beyond_64_bits_and_floats_come_back_exactly(store):
    """JSON numbers are read back exactly: an integer beyond 64 bits stays that integer (a
    reader that made it a float would lose digits), a float stays its value."""
    job = store.enqueue(new_job("t", {"n": NUMBERS})).job
    [batched] = [r.job for r in store.enqueue_many([new_job("t", NUMBERS)])]
    for payload in (job.payload, store.get_job(job.id).payload, claim_one(store).payload):
        assert payload == {"n": NUMBERS}
        assert [type(n) for n in payload["n"][:4]] == [int] * 4
        assert payload["n"][-1] == 2**53 + 1  # not rounded through a float
    assert batched.payload == NUMBERS == store.get_job(batched.id).payload
