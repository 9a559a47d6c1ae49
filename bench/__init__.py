"""Kennel's benchmarks; results go to bench/results/ and, through `python -m bench.report`, to
docs/benchmarks.md. Every entry point runs as a module, with .venv's Python: scripts/setup.sh makes
the repository's packages and the two images' packages importable there (kennel.pth):

    .venv/bin/python -m bench.serve --help
    .venv/bin/python -m bench.report

`make bench` and `make soak` run them.
"""
