"""/opt/ml/output/failure: SageMaker shows its first 1024 characters as the job's FailureReason."""

import logging
import traceback
from pathlib import Path

LIMIT = 1024
FAILURE_FILE = "failure"


def describe(error: BaseException) -> str:
    """The most useful line first (the error itself), then where it happened, innermost frame first."""
    headline = f"{type(error).__name__}: {error}".strip()
    frames = traceback.extract_tb(error.__traceback__)
    where = [f"  at {frame.filename}:{frame.lineno} in {frame.name}" for frame in reversed(frames)]
    return "\n".join([headline, *where])[:LIMIT]


def write_failure(output_dir: str | Path, message: str) -> None:
    try:
        path = Path(output_dir) / FAILURE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:LIMIT])
    except OSError as err:
        logging.getLogger(__name__).error("cannot write the failure file in %s: %s", output_dir, err)


def clear_failure(output_dir: str | Path) -> None:
    """A rerun in the same folders (a resumed job) must not inherit the last run's failure."""
    (Path(output_dir) / FAILURE_FILE).unlink(missing_ok=True)
