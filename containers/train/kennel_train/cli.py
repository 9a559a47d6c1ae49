"""`train`: the training container's entry point.

    docker run kennel-train train                                   # a SageMaker training job runs this
    docker run -v ~/dogImages:/opt/ml/input/data/training -v ~/model:/opt/ml/model kennel-train train
"""

import argparse

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="train", description=__doc__.strip().splitlines()[0])
    parser.parse_args(argv)
    raise SystemExit(f"train: the trainer is not built yet (torch {torch.__version__} is installed)")
