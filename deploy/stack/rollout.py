"""[endpoint.rollout]: how `up` moves traffic to a new model (SageMaker's deployment guardrails), which of
the stack's own alarms roll it back, and the images the local pre-flight sends to the new model.

    [endpoint.rollout]
    strategy = "canary"        # all_at_once (default), canary or linear
    canary_percent = 10        # canary: the first step, 1..50% of the fleet; linear: step_percent 10..50
    wait_seconds = 300         # between steps: the canary's (or each step's) baking time
    bake_seconds = 600         # after all traffic moved, before the old fleet goes

The ranges are SageMaker's own (TrafficRoutingConfig, BlueGreenUpdatePolicy), checked here so that a
wrong value fails before anything is uploaded.
"""

from dataclasses import dataclass
from pathlib import Path

from deploy.stack.alarms import Alarms
from deploy.stack.validate import StackError, Table

STRATEGIES = ("all_at_once", "canary", "linear")
# The stack's alarms that watch the endpoint, by the suffix of their name (deploy/alarms.py), and the
# [alarms] key that creates each.
ENDPOINT_ALARMS = {
    "endpoint-5xx-rate": "endpoint_5xx_percent",
    "endpoint-4xx-rate": "endpoint_4xx_percent",
    "endpoint-latency-p99": "latency_p99_ms",
    "endpoint-cpu": "cpu_percent",
}
DEFAULT_ALARMS = ("endpoint-5xx-rate", "endpoint-latency-p99")
# A step's baking time when the table leaves it out (canary and linear; all_at_once moves at once).
DEFAULT_WAIT_SECONDS = 300
MAX_WAIT_SECONDS = 3600  # WaitIntervalInSeconds and TerminationWaitInSeconds
TIMEOUT_SECONDS = (600, 28800)  # MaximumExecutionTimeoutInSeconds


@dataclass(frozen=True)
class Rollout:
    strategy: str = "all_at_once"
    # Percent of the new fleet's capacity that takes traffic first (canary) or per step (linear).
    step_percent: int | None = None
    wait_seconds: int = 0
    bake_seconds: int = 0
    timeout_seconds: int | None = None  # None: SageMaker's default
    alarms: tuple[str, ...] = ()  # suffixes of the stack's alarm names (ENDPOINT_ALARMS)
    preflight_images: tuple[Path, ...] = ()  # empty: generated pictures

    @property
    def guarded(self) -> bool:
        """Whether traffic moves in steps, each watched by the alarms."""
        return self.strategy != "all_at_once"


def parse_rollout(table: Table, kind: str, instance_type: str | None, base: Path) -> Rollout:
    """All at once without the table. `kind` and `instance_type` are the endpoint's; `base` is the folder
    that paths resolve against."""
    if not table.present:
        return Rollout()
    strategy = table.string("strategy", required=False) or "all_at_once"
    if strategy not in STRATEGIES:
        raise StackError(f"{table.key('strategy')}: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    guarded = strategy != "all_at_once"
    if guarded and kind == "serverless":
        raise StackError(
            f"{table.key('strategy')}: {strategy} does not apply to a serverless endpoint: canary and linear "
            "steps are shares of a fleet's instances, and a serverless endpoint has none; use all_at_once"
        )
    if guarded and instance_type and instance_type.startswith("ml.inf1."):
        raise StackError(
            f"{table.key('strategy')}: SageMaker moves traffic to Inf1 instances all at once, whatever the "
            "stack asks; use all_at_once"
        )
    rollout = Rollout(
        strategy=strategy,
        step_percent=_step_percent(table, strategy),
        wait_seconds=_seconds(table, "wait_seconds", DEFAULT_WAIT_SECONDS if guarded else 0),
        bake_seconds=_seconds(table, "bake_seconds", DEFAULT_WAIT_SECONDS if guarded else 0),
        timeout_seconds=table.optional_integer("timeout_seconds", *TIMEOUT_SECONDS),
        alarms=_alarm_names(table, guarded),
        preflight_images=_images(table, base),
    )
    table.reject_unknown()
    return rollout


def _step_percent(table: Table, strategy: str) -> int | None:
    """canary_percent 1..50 on a canary, step_percent 10..50 on a linear rollout (SageMaker's bounds on
    CanarySize and LinearStepSize); each refused on the other strategies."""
    wanted = {"canary": ("canary_percent", 1), "linear": ("step_percent", 10)}.get(strategy)
    for key in ("canary_percent", "step_percent"):
        if key in table.data and (wanted is None or wanted[0] != key):
            raise StackError(f"{table.key(key)}: does not apply to strategy {strategy!r}; remove it")
    if wanted is None:
        return None
    return table.integer(wanted[0], minimum=wanted[1], maximum=50)


def _seconds(table: Table, key: str, default: int) -> int:
    value = table.optional_integer(key, 0, MAX_WAIT_SECONDS)
    return default if value is None else value


def _alarm_names(table: Table, guarded: bool) -> tuple[str, ...]:
    if "alarms" not in table.data:
        return DEFAULT_ALARMS if guarded else ()
    names = table.optional_list("alarms", "alarm names")
    unknown = [n for n in names if n not in ENDPOINT_ALARMS]
    if unknown or not names:
        raise StackError(
            f"{table.key('alarms')}: must list some of the stack's endpoint alarms "
            f"({', '.join(ENDPOINT_ALARMS)}); {unknown[0] if unknown else 'the list'} is not one"
        )
    return tuple(dict.fromkeys(names))


def _images(table: Table, base: Path) -> tuple[Path, ...]:
    """A folder (its .jpg, .jpeg and .png files) or a list of image files; relative to `base`."""
    value = table.data.get("preflight_images")
    table.read.add("preflight_images")
    if value is None:
        return ()
    key = table.key("preflight_images")
    if isinstance(value, str):
        folder = (base / value).resolve()
        if not folder.is_dir():
            raise StackError(f"{key}: {folder} is not a folder")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not found:
            raise StackError(f"{key}: {folder} has no .jpg, .jpeg or .png file")
        return tuple(found)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise StackError(f"{key}: must be a folder or a non-empty list of image files")
    files = tuple((base / v).resolve() for v in value)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise StackError(f"{key}: {missing[0]} is not a file")
    return files


def check_alarms(rollout: Rollout, alarms: Alarms) -> None:
    """Each alarm the rollout watches must be one `up` creates: its [alarms] threshold set."""
    for name in rollout.alarms:
        threshold = ENDPOINT_ALARMS[name]
        if getattr(alarms, threshold) is None:
            raise StackError(
                f"endpoint.rollout.alarms: {name} rolls the {rollout.strategy} rollout back, but no alarm "
                f"of that name is created: set alarms.{threshold} in [alarms], or list other alarms"
            )
