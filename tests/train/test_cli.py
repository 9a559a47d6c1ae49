"""`train`'s train-once flags, as docker-compose.yml runs them: --skip-if-trained, --synthetic-if-no-data."""

import contextlib
import json
from pathlib import Path

from kennel_train import cli
from kennel_train.config import TrainConfig
from kennel_train.data import find_splits


def test_skip_if_trained_exits_before_reading_anything_when_a_model_is_there(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "manifest.json").write_text(json.dumps({"format": "kennel-model"}))
    flags = ["--data", str(tmp_path / "absent"), "--model-dir", str(model_dir)]
    flags += ["--output-dir", str(tmp_path / "output"), "--checkpoint-dir", str(tmp_path / "checkpoints")]
    assert cli.main([*flags, "--skip-if-trained"]) == 0
    assert [p.name for p in model_dir.iterdir()] == ["manifest.json"]
    assert not (tmp_path / "output" / "failure").exists()
    # Without the flag the same command trains, and fails on the missing data.
    assert cli.main(flags) == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("DataError: missing train split"), failure


def test_synthetic_if_no_data_trains_on_a_generated_set_only_when_data_has_no_train_split(tmp_path):
    empty = TrainConfig(data=str(tmp_path), synthetic_if_no_data=True)
    with contextlib.ExitStack() as stack:
        config = cli.with_data(empty, stack)
        generated = Path(config.data)
        splits = find_splits(config)
        assert len(splits.classes) == 5
        assert len(list(splits.train.rglob("*.jpg"))) == 5 * 24
    assert not generated.exists(), "the generated set is removed when training ends"
    assert cli.with_data(TrainConfig(data=str(tmp_path)), contextlib.ExitStack()) == TrainConfig(
        data=str(tmp_path)
    )
    (tmp_path / "train").mkdir()
    assert cli.with_data(empty, contextlib.ExitStack()) == empty  # mounted data wins
    separate = TrainConfig(data=str(tmp_path / "x"), train_dir=str(tmp_path), synthetic_if_no_data=True)
    assert cli.with_data(separate, contextlib.ExitStack()) == separate  # a `train` channel too
