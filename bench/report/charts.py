"""The serving run's chart for docs/benchmarks.md."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report.load import best_ceiling, median, point


def serving_chart(serving: dict, path: Path) -> None:
    """Throughput and p99 against concurrency for every server of the serving run, as a PNG at `path`."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    concurrency = [1, 4, 16]
    for name in serving["servers"]:
        for axis, key in ((left, "rps"), (right, "p99")):
            values = [point(serving, name, c, key) for c in concurrency]
            mid = [median(v) for v in values]
            error = [
                [m - min(v) for m, v in zip(mid, values, strict=True)],
                [max(v) - m for m, v in zip(mid, values, strict=True)],
            ]
            axis.errorbar(concurrency, mid, yerr=error, marker="o", capsize=3, label=name)
    left.axhline(
        best_ceiling(serving, "fp32", "pipeline"), color="grey", linestyle="--", label="fp32 ceiling"
    )
    left.set(
        xscale="log", xticks=concurrency, xticklabels=concurrency, xlabel="concurrency", ylabel="requests/s"
    )
    right.set(xscale="log", yscale="log", xticks=concurrency, xticklabels=concurrency, xlabel="concurrency")
    right.set_ylabel("p99 latency, ms")
    left.set_title("Throughput (median, min-max)")
    right.set_title("p99 latency (median, min-max)")
    left.legend(fontsize=8)
    figure.suptitle("ResNet-50, 133 classes, 500x375 JPEG, 2 CPU cores")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
