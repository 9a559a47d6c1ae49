"""python -m bench.report: see bench/report/__init__.py."""

import argparse
from pathlib import Path

import bench.report
from bench.report import charts, judge, load, markdown
from bench.report.load import RESULTS, ROOT

DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks-serving.png"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description=bench.report.__doc__.splitlines()[0]
    )
    parser.add_argument("--serving", type=Path, default=RESULTS / "serving.json")
    parser.add_argument("--training", type=Path, default=RESULTS / "training.json")
    parser.add_argument("--decode", type=Path, default=RESULTS / "decode.json")
    parser.add_argument("--gpu", type=Path, default=RESULTS / "gpu.json")
    parser.add_argument("--soak", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--memory-ab", type=Path, default=RESULTS / "memory_ab.json")
    parser.add_argument("--peers-sweep", type=Path, default=RESULTS / "peers_sweep.json")
    parser.add_argument("--latency", type=Path, default=RESULTS / "latency.json")
    parser.add_argument("--runtime-ab", type=Path, default=RESULTS / "runtime_ab.json")
    parser.add_argument("--kennel-sweep", type=Path, default=RESULTS / "kennel_sweep.json")
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="where to write the page (its chart goes beside it)"
    )
    args = parser.parse_args()
    results = load.load(
        args.serving,
        args.training,
        args.decode,
        args.gpu,
        args.soak,
        args.memory_ab,
        args.peers_sweep,
        args.latency, args.runtime_ab, args.kennel_sweep,
    )  # fmt: skip
    figures = judge.ratios(results.serving)
    goals = judge.goals(results.serving, figures, results.memory_ab)
    chart = args.doc.with_name(CHART.name)
    charts.serving_chart(results.serving, chart)
    args.doc.write_text(markdown.document(results, figures, goals, chart.name))
    print(f"wrote {args.doc} and {chart}")


main()
