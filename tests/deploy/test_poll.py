"""poll.until against a clock that only its sleeps move: what it returns, how long it waits between
checks, and what it says when the deadline passes."""

from dataclasses import dataclass, field
from itertools import islice

import pytest

from deploy import poll
from deploy.aws import DeployError


@dataclass
class Clock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(poll, "monotonic", lambda: fake.now)
    monkeypatch.setattr(poll, "sleep", fake.sleep)
    return fake


def answers(*values):
    """A check that returns `values` in turn."""
    pending = list(values)

    def check():
        return pending.pop(0)

    return check


def test_the_delay_doubles_from_first_up_to_cap():
    assert list(islice(poll.delays(1, 5), 6)) == [1, 2, 4, 5, 5, 5]
    assert list(islice(poll.delays(30, 10), 3)) == [10, 10, 10]
    assert list(islice(poll.delays(0, 10), 3)) == [0, 0, 0]  # the tests' poll interval never sleeps


def test_success_returns_the_value_without_sleeping_after_it(clock):
    check = answers(None, None, None, {"Status": "READY"})
    assert poll.until(check, what="not READY", within=60, first=1, cap=3) == {"Status": "READY"}
    assert clock.slept == [1, 2, 3]


def test_a_falsy_answer_other_than_none_ends_the_wait(clock):
    assert poll.until(answers(None, b""), what="no result", within=60, first=1, cap=3) == b""
    assert clock.slept == [1]


def test_the_deadline_raises_what_was_waited_for_and_how_long(clock):
    checked_at: list[float] = []

    def never() -> None:
        checked_at.append(clock.now - 1000)

    with pytest.raises(DeployError) as err:
        poll.until(never, what="no result", within=10, first=1, cap=4, hint="it will appear at s3://b/k")
    assert str(err.value) == "no result after 10 s: it will appear at s3://b/k"
    assert err.value.reason == "it will appear at s3://b/k"
    # the last wait is cut short so that the last check falls on the deadline
    assert clock.slept == [1, 2, 4, 3]
    assert checked_at == [0, 1, 3, 7, 10]


def test_an_error_from_the_check_ends_the_wait_at_once(clock):
    def failed() -> None:
        raise DeployError("provisioned concurrency failed", "no capacity")

    with pytest.raises(DeployError, match="no capacity"):
        poll.until(failed, what="not READY", within=60, first=1, cap=3)
    assert clock.slept == []


def test_without_a_deadline_it_waits_as_long_as_it_takes(clock):
    check = answers(*[None] * 500, "Completed")
    assert poll.until(check, what="the job did not end", within=None, first=10, cap=10) == "Completed"
    assert clock.slept == [10] * 500
