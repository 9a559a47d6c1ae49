"""Writes docs/benchmarks.md and its chart from the raw results of bench/serve.py,
bench/train_throughput.py, bench/decode_agreement.py, (on a GPU machine) bench/gpu.py and, when it has run,
bench/soak.py.

    .venv/bin/python -m bench.report   # reads bench/results/{serving,training,decode,gpu,soak}.json

Ratios come first, then the goals as met or missed with the reason, then the tables.
Every figure is a median over the interleaved repetitions, with the min-max spread beside it.
`load` reads the results, `judge` holds the goals and judges them, `markdown` writes the page and
`charts` draws its chart.
"""
