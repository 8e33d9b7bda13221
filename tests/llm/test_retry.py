import pytest

from genrecsys.llm.retry import (PermanentError, RetryPolicy, TransientError, call_with_retry, classify_http,
                                 parse_retry_after)


def test_backoff_grows_exponentially_and_is_capped():
    p = RetryPolicy(base_s=1.0, max_backoff_s=5.0, jitter=False)
    assert [p.backoff(a) for a in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_wins_over_backoff_but_is_capped():
    p = RetryPolicy(max_retry_after_s=10.0, jitter=False)
    assert p.backoff(1, retry_after=3.0) == 3.0
    assert p.backoff(1, retry_after=500.0) == 10.0


def test_retry_after_header_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("") is None


@pytest.mark.parametrize("status,kind", [(429, TransientError), (500, TransientError), (503, TransientError),
                                         (408, TransientError), (400, PermanentError), (401, PermanentError),
                                         (404, PermanentError)])
def test_http_statuses_are_classified(status, kind):
    assert isinstance(classify_http(status, {}, "{}"), kind)


def test_quota_exhaustion_is_not_retried_even_as_429():
    assert isinstance(classify_http(429, {}, '{"error": {"code": "insufficient_quota"}}'), PermanentError)


def test_call_with_retry_sleeps_retry_after_between_attempts():
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("busy", retry_after=1.5)
        return "ok"

    assert call_with_retry(fn, RetryPolicy(), sleep=sleeps.append) == ("ok", 3)
    assert sleeps == [1.5, 1.5]


def test_permanent_error_is_raised_after_one_attempt():
    sleeps = []

    def fn():
        raise PermanentError("bad request")

    with pytest.raises(PermanentError) as exc:
        call_with_retry(fn, RetryPolicy(), sleep=sleeps.append)
    assert exc.value.attempts == 1 and sleeps == []
