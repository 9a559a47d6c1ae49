"""The raw results the benchmarks write to bench/results/, and the figures read out of the serving run's."""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
# The servers of the serving run, as bench/serve.py names them.
KENNEL_FP32, TS_DEFAULT, TS_TUNED, KENNEL_INT8 = (
    "Kennel fp32",
    "TorchServe default",
    "TorchServe tuned",
    "Kennel INT8",
)

# The peers serving the same ONNX files (bench/peers/), and Kennel's server of the same model, per precision.
PEERS = {"fp32": ("BentoML fp32", "LitServe fp32"), "int8": ("BentoML INT8", "LitServe INT8")}
KENNEL = {"fp32": KENNEL_FP32, "int8": KENNEL_INT8}


@dataclass(frozen=True)
class Results:
    """One JSON document per benchmark; None for those that have not run (their files are optional)."""

    serving: dict
    training: dict
    decode: dict | None
    gpu: dict | None
    soak: dict | None
    memory_ab: dict | None
    peers_sweep: list | None = None
    latency: dict | None = None
    runtime_ab: dict | None = None
    kennel_sweep: list | None = None


def load(
    serving: Path, training: Path, decode: Path, gpu: Path, soak: Path, memory_ab: Path,
    peers_sweep: Path | None = None, latency: Path | None = None, runtime_ab: Path | None = None,
    kennel_sweep: Path | None = None,
) -> Results:  # fmt: skip
    """The serving and training results must be there; the others are read when their files are."""
    return Results(
        serving=json.loads(serving.read_text()),
        training=json.loads(training.read_text()),
        decode=_optional(decode),
        gpu=_optional(gpu),
        soak=_optional(soak),
        memory_ab=_optional(memory_ab),
        peers_sweep=_optional(peers_sweep) if peers_sweep else None,
        latency=_optional(latency) if latency else None,
        runtime_ab=_optional(runtime_ab) if runtime_ab else None,
        kennel_sweep=_optional(kennel_sweep) if kennel_sweep else None,
    )


def _optional(path: Path) -> dict | list | None:
    return json.loads(path.read_text()) if path.is_file() else None


def median(values: list[float]) -> float:
    return statistics.median(values)


def point(serving: dict, name: str, concurrency: int, key: str) -> list[float]:
    return [run["points"][str(concurrency)][key] for run in serving["servers"][name]["runs"]]


def payload_point(serving: dict, name: str, payload: str, key: str) -> list[float]:
    return [run["payloads"][payload][key] for run in serving["servers"][name]["runs"] if "payloads" in run]


def ceiling(serving: dict, key: str) -> list[float]:
    return [run[key] for run in serving["ceilings"]]


def best_ceiling(serving: dict, precision: str, stage: str) -> float:
    """The best batch size's median: the most this stage can do in one process."""
    keys = [key for key in serving["ceilings"][0] if key.startswith(f"{precision} {stage} ")]
    return max(median(ceiling(serving, key)) for key in keys)


def cold(serving: dict, name: str, key: str) -> list[float]:
    return [run[key] for run in serving["servers"][name]["runs"]]
