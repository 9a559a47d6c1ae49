"""Waiting for what botocore has no waiter for: an async inference result in S3, a role IAM has not
spread yet, a job to end, provisioned concurrency to become READY.

    result = poll.until(check, what="no result", within=900, first=run.poll_seconds, cap=30)

`check` returns None while the wait goes on and anything else to end it; an error it raises ends it too.
The delay between checks starts at `first` and doubles up to `cap`: the SDK's exponential backoff
without its jitter, which spreads many clients retrying at once, where here one run polls one thing.
The last check falls on the deadline; a deadline passed raises a DeployError that says what was still
not so and after how long.
"""

from collections.abc import Callable, Iterator
from time import monotonic, sleep
from typing import TypeVar

from deploy.aws import DeployError

T = TypeVar("T")
GROWTH = 2


def delays(first: float, cap: float) -> Iterator[float]:
    """first, 2 * first, 4 * first, ..., each at most cap."""
    delay = min(max(first, 0), cap)
    while True:
        yield delay
        delay = min(delay * GROWTH, cap)


def until(
    check: Callable[[], T | None],
    *,
    what: str,
    within: float | None,
    first: float,
    cap: float,
    hint: str | None = None,
) -> T:
    """Calls `check` until it returns something other than None, and returns that. `within` seconds
    (None: no deadline) bound the wait; past them, DeployError("{what} after {within} s", hint)."""
    deadline = None if within is None else monotonic() + within
    waits = delays(first, cap)
    while (value := check()) is None:
        delay = next(waits)
        if deadline is not None:
            left = deadline - monotonic()
            if left <= 0:
                raise DeployError(f"{what} after {within:g} s", hint)
            delay = min(delay, left)
        sleep(delay)
    return value
