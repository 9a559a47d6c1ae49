"""The one per-epoch log line, and the SageMaker MetricDefinitions that parse it.

Every epoch (one line; wrapped here):
    epoch=3/10 train:loss=0.8123 train:accuracy=0.7012 validation:loss=0.6543 validation:accuracy=0.8110
    lr=0.000812 images_per_second=412.3
After the last:
    test:loss=0.6601 test:accuracy=0.8033
"""

import json
from importlib import resources

METRIC_DEFINITIONS_FILE = "metric_definitions.json"


def epoch_line(epoch: int, epochs: int, train: dict, valid: dict, lr: float, images_per_second: float) -> str:
    return (
        f"epoch={epoch}/{epochs} train:loss={train['loss']:.4f} train:accuracy={train['accuracy']:.4f} "
        f"validation:loss={valid['loss']:.4f} validation:accuracy={valid['accuracy']:.4f} "
        f"lr={lr:.6g} images_per_second={images_per_second:.1f}"
    )


def test_line(test: dict) -> str:
    return f"test:loss={test['loss']:.4f} test:accuracy={test['accuracy']:.4f}"


def metric_definitions() -> list[dict[str, str]]:
    """The shipped metric_definitions.json: the file deploy/ passes as MetricDefinitions."""
    text = resources.files("kennel_train").joinpath(METRIC_DEFINITIONS_FILE).read_text()
    return json.loads(text)
