"""One torchrun worker: `python -m torch.distributed.run ... -m kennel_train.worker CONFIG.json`.

`train` writes the config and starts torchrun itself; nothing else needs to run this module.
"""

import logging
import os
import sys
from pathlib import Path

from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext
from kennel_train.engine import Stopped, main
from kennel_train.failure import describe, write_failure


def run(config_file: str) -> int:
    config = TrainConfig.from_json(Path(config_file).read_text())
    dist = None
    try:
        dist = DistContext.from_torchrun(dict(os.environ))
        logging.basicConfig(
            level=logging.INFO, format=f"%(asctime)s rank{dist.rank} %(levelname)s %(name)s: %(message)s"
        )
        main(config, dist)
    except Stopped:
        return 143
    except Exception as error:
        rank = dist.rank if dist else os.environ.get("RANK", "?")
        logging.getLogger("kennel_train").exception("rank %s failed", rank)
        write_failure(config.output_dir, f"rank {rank}: {describe(error)}")
        return 1
    finally:
        if dist:
            dist.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
