"""What a hostile or flaky upstream can still send: any Retry-After (infinite, huge,
negative, a date), a body declared larger than the cap, and transient failures while a
forwarded BFL job is polled (retried: BFL still runs, and bills, the job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import test_upstream_bfl
import test_upstream_hosted
from helpers.fake_upstream import Declares, drop_connection, pending, reply
from helpers.http import job_of
from test_upstream_bfl import send as send_bfl
from test_upstream_hosted import send as send_hosted

#: The servers forwarding to the fake upstream, as the upstream tests start them.
bfl, hosted = test_upstream_bfl.bfl, test_upstream_hosted.hosted

#: The longest Retry-After the server passes on or waits: a day.
MAX_RETRY_AFTER = 86_400
FAR_FUTURE = format_datetime(datetime.now(UTC) + timedelta(days=4000), usegmt=True)
PAST = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)

RETRY_AFTERS = [("inf", MAX_RETRY_AFTER), ("1e400", MAX_RETRY_AFTER),
                ("-Infinity", 1), ("-5", 1), ("nan", 1), ("9" * 5000, MAX_RETRY_AFTER),
                (FAR_FUTURE, MAX_RETRY_AFTER), (PAST, 1), ("soon", 1), ("7.5", 8)]


@pytest.mark.parametrize(("value", "passed_on"), RETRY_AFTERS,
                         ids=["inf", "1e400", "-inf", "-5", "nan", "5000-digits",
                              "far-date", "past-date", "word", "7.5"])
def test_any_retry_after_from_upstream_is_a_429_with_a_sane_one(hosted, fake, value,
                                                                  passed_on):
    fake.then("hosted", reply(429, "slow down", {"Retry-After": value}))
    answer = send_hosted(hosted(upstream_retry_budget=0), accept="application/json")
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) == passed_on
    assert "429" in answer.json()["error"]


@pytest.mark.parametrize("value", ["inf", "1e400", FAR_FUTURE],
                         ids=["inf", "1e400", "far-date"])
def test_an_endless_retry_after_while_polling_ends_at_the_job_time_limit(bfl, fake, value):
    fake.then("poll", reply(429, "", {"Retry-After": value}))
    answer = send_bfl(bfl(upstream_job_timeout=1), accept="application/json")
    assert answer.status_code == 504, answer.text
    assert "longer than 1 s" in answer.json()["error"]


@pytest.mark.parametrize("value", ["-5", "nan", PAST], ids=["-5", "nan", "past-date"])
def test_a_past_or_negative_retry_after_while_polling_polls_again(bfl, fake, value):
    fake.then("poll", reply(429, "", {"Retry-After": value}))
    answer = send_bfl(bfl(), accept="application/json")
    assert answer.status_code == 200, answer.text
    assert len(fake.requests("poll")) == 2


def test_a_declared_body_over_the_cap_is_refused_before_reading(hosted, fake):
    fake.then("hosted", lambda seen, fake: Declares(2 * 1024**3, content_type="image/png"))
    answer = send_hosted(hosted(upstream_timeout=20), accept="application/json")
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert "declared a 2147483648-byte answer, over the 52428800-byte limit" in error


def test_a_declared_result_over_the_cap_is_refused_before_reading(bfl, fake):
    fake.then("sample", lambda seen, fake: Declares(10**12))
    answer = send_bfl(bfl(upstream_timeout=20), accept="application/json")
    assert answer.status_code == 502, answer.text
    assert "declared a 1000000000000-byte answer" in answer.json()["error"]


def test_transient_poll_failures_are_retried(bfl, fake):
    fake.then("poll", reply(503, "overloaded"), drop_connection, reply(500, "oops"), pending)
    answer = send_bfl(bfl(), accept="application/json")
    assert answer.status_code == 200, answer.text
    assert len(fake.requests("poll")) == 5
    assert len(fake.requests("submit")) == 1  # the job was never submitted twice


def test_polls_failing_until_the_job_time_limit_are_504(bfl, fake):
    fake.then("poll", *[reply(502, "bad gateway")] * 500)
    answer = send_bfl(bfl(upstream_job_timeout=1), accept="application/json")
    assert answer.status_code == 504, answer.text
    assert "longer than 1 s" in answer.json()["error"]
    assert len(fake.requests("poll")) > 1


def test_a_malformed_poll_answer_is_not_retried(bfl, fake):
    fake.then("poll", reply(200, "<html>gateway</html>"))
    answer = send_bfl(bfl(), accept="application/json")
    assert answer.status_code == 502
    assert "polling answered 200 with status 'None'" in job_of(answer)["error"]
    assert len(fake.requests("poll")) == 1
