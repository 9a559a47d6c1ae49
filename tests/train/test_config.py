"""Hyperparameter encodings, precedence and the SageMaker adapter, on real /opt/ml-shaped folders."""

import json
from pathlib import Path

import pytest
from kennel_train.config import ConfigError, TrainConfig, build_parser, decode_hyperparameters, resolve
from kennel_train.sagemaker import SageMakerContract, load_config


def opt_ml(root: Path, hyperparameters: dict | None = None, resources: dict | None = None) -> Path:
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
    if resources:
        (config / "resourceconfig.json").write_text(json.dumps(resources))
    (root / "input" / "data" / "training").mkdir(parents=True)
    return root


def test_sdk_json_encoded_and_raw_api_values_decode_alike():
    sdk = {
        k: json.dumps(v)
        for k, v in {"backbone": "resnet18", "epochs": 3, "lr": 0.01, "resume": False}.items()
    }
    raw = {"backbone": "resnet18", "epochs": "3", "lr": "0.01", "resume": "false"}
    expected = {"backbone": "resnet18", "epochs": 3, "lr": 0.01, "resume": False}
    assert decode_hyperparameters(sdk) == (expected, [])
    assert decode_hyperparameters(raw) == (expected, [])


def test_aliases_reserved_and_unknown_hyperparameters():
    values, unknown = decode_hyperparameters(
        {"learning_rate": "0.5", "batch-size": "4", "sagemaker_program": '"x.py"', "colour": "red"}
    )
    assert values == {"lr": 0.5, "batch_size": 4}
    assert unknown == ["colour"]


@pytest.mark.parametrize(
    ("name", "value"), [("epochs", "three"), ("epochs", "2.5"), ("backbone", "vgg11"), ("resume", "maybe")]
)
def test_bad_values_are_errors_naming_the_field(name, value):
    with pytest.raises(ConfigError, match=name):
        decode_hyperparameters({name: value})


def test_flags_override_hyperparameters_override_defaults(tmp_path):
    root = opt_ml(tmp_path, {"epochs": '"7"', "lr": "0.02", "backbone": '"resnet34"'})
    flags = vars(build_parser().parse_args(["--epochs", "2"]))
    config = load_config(flags, SageMakerContract(root, env={}))
    assert config.epochs == 2  # flag
    assert config.lr == 0.02  # hyperparameter
    assert config.backbone == "resnet34"
    assert config.batch_size == TrainConfig().batch_size  # default
    assert config.data == str(root / "input" / "data" / "training")
    assert config.model_dir == str(root / "model")


def test_unset_flags_do_not_override_hyperparameters():
    assert vars(build_parser().parse_args([])) == {}


def test_flags_only_without_an_opt_ml_tree(tmp_path):
    flags = vars(
        build_parser().parse_args(["--data", "/data", "--hosts", "a,b", "--freeze-backbone", "true"])
    )
    config = load_config(flags, SageMakerContract(tmp_path / "absent", env={}))
    assert (config.data, config.hosts, config.freeze_backbone) == ("/data", ("a", "b"), True)


def test_resourceconfig_and_sm_variables(tmp_path):
    root = opt_ml(tmp_path, resources={"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    (root / "input" / "data" / "validation").mkdir()
    config = load_config(
        {}, SageMakerContract(root, env={"SM_MODEL_DIR": "/elsewhere", "TRAINING_JOB_NAME": "j"})
    )
    assert config.hosts == ("algo-1", "algo-2")
    assert config.current_host == "algo-2"
    assert config.model_dir == "/elsewhere"
    assert config.valid_dir == str(root / "input" / "data" / "validation")
    assert config.job_name == "j"
    hps = SageMakerContract(root, env={"SM_HPS": json.dumps({"epochs": 4})})
    assert load_config({}, hps).epochs == 4


def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, default in [("--epochs", "10"), ("--backbone", "'resnet50'"), ("--lr", "0.001")]:
        assert name in text
        assert f"(default: {default})" in text
    assert text.count("(default:") == len(TrainConfig.__dataclass_fields__)


def test_config_round_trips_through_json():
    config = resolve({"hosts": ("algo-1", "algo-2"), "epochs": 3}, {}, {})
    assert TrainConfig.from_json(config.to_json()) == config


def test_zero_epochs_is_an_error():
    with pytest.raises(ConfigError, match="epochs"):
        resolve({"epochs": 0}, {}, {})


def test_a_yes_no_flag_alone_means_yes():
    flags = vars(build_parser().parse_args(["--skip-if-trained", "--quantize=false", "--epochs", "2"]))
    assert flags == {"skip_if_trained": True, "quantize": False, "epochs": 2}


def test_the_readme_lists_every_flag_with_its_default():
    readme = (Path(__file__).resolve().parents[2] / "containers" / "train" / "README.md").read_text()
    rows = {line.split(" | ")[0].strip("| `") for line in readme.splitlines() if line.startswith("| `--")}
    assert rows == {"--" + name.replace("_", "-") for name in TrainConfig.__dataclass_fields__}
    for name, field in TrainConfig.__dataclass_fields__.items():
        default = field.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        shown = str(shown).lower() if isinstance(shown, bool) else shown
        cell = f"`{shown}`" if shown != "" else "empty"
        assert f"| `--{name.replace('_', '-')}` | {cell} |" in readme, name
