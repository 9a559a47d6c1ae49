"""`train`: the training container's entry point. Every option is a flag and a hyperparameter.

    docker run kennel-train train                       # a SageMaker training job runs exactly this
    docker run --gpus all -v ~/dogImages:/opt/ml/input/data/training -v ~/model:/opt/ml/model \\
        kennel-train train --epochs 10                  # EC2 or a workstation, flags only
    docker run kennel-train train --backbone resnet18 --weights none --nproc-per-node 2   # 2 CPU processes
    train --skip-if-trained --synthetic-if-no-data ...  # docker-compose.yml: train once, data or not
"""

import contextlib
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

from kennel_train import dist as distributed
from kennel_train import synthetic
from kennel_train.config import ConfigError, TrainConfig, build_parser
from kennel_train.engine import Stopped
from kennel_train.engine import main as train_main
from kennel_train.failure import FAILURE_FILE, clear_failure, describe, write_failure
from kennel_train.sagemaker import load_config

EPILOG = """\
precedence: flags > hyperparameters.json (JSON-encoded or raw strings) > /opt/ml and SM_* > defaults.
data: DATA holds train/ valid/ test/, or separate `train`, `validation`, `test` channels are used.
output: the model directory in MODEL_DIR (model.onnx, manifest.json, model.pth, metric_definitions.json,
and with --quantize model.int8.onnx if it passes the accuracy guard; docs/model-format.md);
on failure the reason in OUTPUT_DIR/failure and a non-zero exit.
"""


log = logging.getLogger("kennel_train")


def already_trained(config: TrainConfig) -> bool:
    return config.skip_if_trained and (Path(config.model_dir) / "manifest.json").is_file()


def with_data(config: TrainConfig, stack: contextlib.ExitStack) -> TrainConfig:
    """`config`, or with --synthetic-if-no-data and nothing to train on, a copy whose DATA is a synthetic
    set generated into a temporary folder that `stack` removes."""
    if not config.synthetic_if_no_data or config.train_dir or (Path(config.data) / "train").is_dir():
        return config
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kennel-synthetic-")))
    log.info("no train/ folder in %s: training on a synthetic set generated in %s", config.data, folder)
    synthetic.write_dataset(folder, classes=5, per_class=40, size=96)
    return dataclasses.replace(config, data=str(folder))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("train", __doc__.splitlines()[0], EPILOG)
    flags = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    output_dir = flags.get("output_dir", "/opt/ml/output")
    try:
        config = load_config(flags)
        output_dir = config.output_dir
        clear_failure(output_dir)
        if already_trained(config):
            log.info("a model is already in %s; not training (--skip-if-trained)", config.model_dir)
            return 0
        with contextlib.ExitStack() as stack:
            config = with_data(config, stack)
            if distributed.needs_launcher(config):
                scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kennel-train-"))
                code = distributed.launch(config, Path(scratch) / "config.json")
                if code not in (0, 143) and not (Path(output_dir) / FAILURE_FILE).is_file():
                    write_failure(output_dir, f"torchrun exited with code {code}; see the job's log")
                return code
            train_main(config, distributed.DistContext.single())
    except Stopped:
        return 143
    except ConfigError as error:
        write_failure(output_dir, f"invalid configuration: {error}")
        log.error("invalid configuration: %s", error)
        return 2
    except Exception as error:
        log.exception("training failed")
        write_failure(output_dir, describe(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
