"""The fake customer webhook server used by the call tests (fake_customer.py) does what they rely
on: records requests in order, answers per path, and never hangs on shutdown."""

import time

import pytest
import requests

from fake_customer import (
    STREAM_OK, FakeCustomer, reply_bad_json, reply_invalid_stream, reply_json, reply_slow,
    reply_status,
)


def test_records_requests_in_order_with_their_details():
    with FakeCustomer() as fc:
        r = requests.post(fc.url("/answer?x=1"), json={"call_uuid": "u1"},
                          headers={"X-Sfvopi-Delivery": "d1"}, timeout=5)
        assert r.status_code == 200 and r.json() == {}
        requests.get(fc.url("/hangup?call_status=COMPLETED&duration=3"), timeout=5)
        a, h = fc.wait_for(2, timeout=5)
        assert (a.method, a.path, a.query, a.json) == ("POST", "/answer", {"x": "1"},
                                                       {"call_uuid": "u1"})
        assert a.header("x-sfvopi-delivery") == "d1" and a.payload == {"call_uuid": "u1"}
        assert h.payload == {"call_status": "COMPLETED", "duration": "3"} and h.json is None
        assert a.time <= h.time
        assert fc.requests("/hangup") == [h]


def test_per_path_replies():
    with FakeCustomer() as fc:
        fc.on("/ok", reply_json(STREAM_OK)).on("/500", reply_status(500))
        fc.on("/bad", reply_bad_json()).on("/invalid", reply_invalid_stream())
        assert requests.post(fc.url("/ok"), timeout=5).json() == STREAM_OK
        assert requests.post(fc.url("/500"), timeout=5).status_code == 500
        with pytest.raises(ValueError):
            requests.post(fc.url("/bad"), timeout=5).json()
        assert requests.post(fc.url("/invalid"), timeout=5).json()["stream"]["codec"] == "OPUS"


def test_slow_reply_is_slow_and_close_does_not_wait_for_it():
    fc = FakeCustomer()
    fc.on("/slow", reply_slow(30))
    with pytest.raises(requests.Timeout):
        requests.post(fc.url("/slow"), timeout=0.5)
    t = time.monotonic()
    fc.close()
    assert time.monotonic() - t < 3


def test_wait_for_times_out_with_what_arrived():
    with FakeCustomer() as fc:
        with pytest.raises(AssertionError, match="expected 1 request"):
            fc.wait_for(1, path="/nothing", timeout=0.2)
