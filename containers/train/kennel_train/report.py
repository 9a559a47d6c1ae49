"""report.html: one self-contained page per run (plots as inline PNG, no script, no link, nothing fetched),
so it opens on an air-gapped laptop. Written into OUTPUT_DIR/data and the model directory.

    html = render(details)     # details: kennel_train.insight.Insight.write assembles them

Plots (matplotlib, Agg): loss and accuracy per epoch; the learning rate; gradient norms and update
ratios per layer group; the step-time breakdown; images/s; CPU, memory and GPU over time; the findings
on that same time axis; the test split's 20 worst classes; its top confusion pairs, each with a thumbnail
of one misclassified image. Each is a <figure id="plot-NAME">: PLOTS lists the names.
"""

import base64
import html
import io
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kennel_train import data
from kennel_train.config import TrainConfig
from kennel_train.preprocessing import for_config

PLOTS = (
    "curves",
    "learning_rate",
    "gradients",
    "step_time",
    "throughput",
    "system",
    "findings",
    "worst_classes",
    "confusions",
)
TOP_PAIRS = 10
WORST_CLASSES = 20
THUMBNAIL_PX = 96
STEP_PARTS = ("data_wait", "forward_backward", "allreduce_wait", "optimizer")
COLOURS = {"warn": "#d98c00", "stop": "#c0392b"}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .2em .7em; text-align: left;
vertical-align: top; border-bottom: 1px solid #eee; } th { background: #f6f6f6; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; }
.warn { color: #9a6300; } .stop { color: #c0392b; font-weight: bold; } .ok { color: #2e7d32; }
"""


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    # No Software tag: the page must not carry any address, not even inside an image's metadata.
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(name: str, caption: str, draw: Callable[[Any], None], height: float = 3.0) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(9, height))
    try:
        draw(figure)
    except _NoData as missing:
        figure.clear()
        figure.text(0.5, 0.5, str(missing), ha="center", va="center", color="#777")
    return (
        f'<figure id="plot-{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{_png(figure)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


class _NoData(Exception):
    """What a plot shows instead when the run has nothing for it."""


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in history if key in r and r[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _mark_findings(axes: Any, findings: list[dict], key: str) -> None:
    for finding in findings:
        axes.axvline(finding[key], color=COLOURS[finding["action"]], linestyle=":", linewidth=1)


def _curves(details: dict) -> Callable[[Any], None]:
    epochs = details["rules"]["epochs"]

    def draw(figure: Any) -> None:
        from matplotlib.ticker import MaxNLocator

        if not epochs:
            raise _NoData("no epoch finished")
        x = [e["epoch"] for e in epochs]
        for index, (metric, title) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
            axes = figure.add_subplot(1, 2, index + 1)
            axes.plot(x, [e[f"train_{metric}"] for e in epochs], "o-", label="train")
            axes.plot(x, [e[f"validation_{metric}"] for e in epochs], "o-", label="validation")
            best = details["rules"]["best_epoch"]
            if best:
                axes.axvline(best, color="#2e7d32", linestyle="--", linewidth=1, label=f"best epoch {best}")
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_title(title)
            axes.legend()

    return draw


def _lines(details: dict, keys: list[str], ylabel: str, log: bool = False) -> Callable[[Any], None]:
    history, findings = details["history"], details["rules"]["findings"]

    def draw(figure: Any) -> None:
        axes = figure.add_subplot(1, 1, 1)
        drawn = False
        for key in keys:
            x, y = _series(history, key)
            if x:
                axes.plot(x, y, label=key.split("/")[-1])
                drawn = True
        if not drawn:
            raise _NoData(f"no {ylabel} readings (--telemetry-every 0?)")
        if log:
            axes.set_yscale("log")
        _mark_findings(axes, findings, "step")
        axes.set_xlabel("step")
        axes.set_ylabel(ylabel)
        if len(keys) > 1:
            axes.legend(fontsize="small", ncol=4)

    return draw


def _gradients(details: dict) -> Callable[[Any], None]:
    history = details["history"]
    groups = sorted(
        {k.split("/", 1)[1] for r in history for k in r if k.startswith("grad_norm/")}, key=_order
    )

    def draw(figure: Any) -> None:
        if not groups:
            raise _NoData("no gradient readings (--telemetry-every 0?)")
        for index, (prefix, title) in enumerate(
            (("grad_norm", "gradient norm"), ("update_ratio", "update / weight"))
        ):
            axes = figure.add_subplot(1, 2, index + 1)
            for group in groups:
                x, y = _series(history, f"{prefix}/{group}")
                axes.plot(x, [max(v, 1e-12) for v in y], label=group)
            axes.set_yscale("log")
            axes.set_xlabel("step")
            axes.set_title(title)
            _mark_findings(axes, details["rules"]["findings"], "step")
        axes.legend(fontsize="small")

    return draw


def _order(group: str) -> tuple[int, str]:
    return (0 if group == "stem" else 2 if group == "head" else 1, group)


def _step_time(details: dict) -> Callable[[Any], None]:
    history = details["history"]

    def draw(figure: Any) -> None:
        if not history:
            raise _NoData("no step readings")
        axes = figure.add_subplot(1, 1, 1)
        x = [r["step"] for r in history]
        parts = [[1000 * r[part] for r in history] for part in STEP_PARTS]
        axes.stackplot(x, parts, labels=[p.replace("_", " ") for p in STEP_PARTS], step="post")
        axes.set_xlabel("step")
        axes.set_ylabel("ms per step")
        axes.legend(fontsize="small", ncol=4, loc="upper left")

    return draw


def _system(details: dict) -> Callable[[Any], None]:
    samples, in_use = details["system"], details.get("gpus_in_use", [])

    def draw(figure: Any) -> None:
        if not samples:
            raise _NoData("no system samples (--system-sample-ms 0, or not rank 0)")
        x = [s["seconds"] for s in samples]
        gpus = max(len(s["gpus"]) for s in samples)
        axes = figure.add_subplot(1, 2, 1)
        cores = len(samples[0]["cpu"])
        for core in range(cores):
            axes.plot(
                x, [s["cpu"][core] if core < len(s["cpu"]) else 0 for s in samples], color="#bbb", lw=0.5
            )
        axes.plot(
            x, [sum(s["cpu"]) / max(len(s["cpu"]), 1) for s in samples], color="#1f77b4", label="CPU mean"
        )
        axes.plot(x, [s["memory"] for s in samples], color="#9467bd", label="memory")
        axes.set_title(f"CPU ({cores} cores, grey: each) and memory")
        axes.set_ylim(0, 105)
        axes.set_xlabel("seconds")
        axes.set_ylabel("percent")
        axes.legend(fontsize="small")
        axes = figure.add_subplot(1, 2, 2, sharex=axes)
        for index in range(gpus):
            used = [s["gpus"][index] if index < len(s["gpus"]) else {} for s in samples]
            tag = "" if index in in_use else " (not used)"
            axes.plot(
                x, [u.get("utilization", math.nan) for u in used], label=f"GPU {index} utilisation{tag}"
            )
            axes.plot(
                x, [u.get("memory", math.nan) for u in used], linestyle="--", label=f"GPU {index} memory"
            )
        axes.set_title("GPUs" if gpus else "no GPU (NVML not available)")
        axes.set_ylim(0, 105)
        axes.set_xlabel("seconds")
        if gpus:
            axes.legend(fontsize="x-small", ncol=2)

    return draw


def _findings(details: dict) -> Callable[[Any], None]:
    findings, total = details["rules"]["findings"], details.get("seconds", 0)
    names = list(details["rules"]["rules"])

    def draw(figure: Any) -> None:
        axes = figure.add_subplot(1, 1, 1)
        for finding in findings:
            axes.plot(
                finding["seconds"], names.index(finding["rule"]), "D", color=COLOURS[finding["action"]], ms=8
            )
        axes.set_yticks(range(len(names)), names)
        axes.set_xlim(0, max(total, 1))
        axes.set_ylim(-0.5, len(names) - 0.5)
        axes.set_xlabel("seconds (the system plot's axis)")
        axes.set_title(f"{len(findings)} finding(s): orange warn, red stop" if findings else "no findings")
        axes.grid(axis="y", color="#eee")

    return draw


def per_class_accuracy(confusion: list[list[int]]) -> list[float]:
    return [row[i] / sum(row) if sum(row) else math.nan for i, row in enumerate(confusion)]


def top_pairs(confusion: list[list[int]], count: int = TOP_PAIRS) -> list[tuple[int, int, int]]:
    """(true, predicted, images) for the most frequent mistakes."""
    pairs = [(n, t, p) for t, row in enumerate(confusion) for p, n in enumerate(row) if t != p and n]
    return [(t, p, n) for n, t, p in sorted(pairs, key=lambda x: (-x[0], x[1], x[2]))[:count]]


def _worst(details: dict) -> Callable[[Any], None]:
    test, classes = details.get("test"), details.get("classes", ())

    def draw(figure: Any) -> None:
        if not test:
            raise _NoData("no test split evaluation (training did not finish)")
        accuracy = per_class_accuracy(test["confusion"])
        worst = sorted(range(len(accuracy)), key=lambda i: (accuracy[i], classes[i]))[:WORST_CLASSES]
        axes = figure.add_subplot(1, 1, 1)
        axes.barh([classes[i] for i in worst][::-1], [accuracy[i] for i in worst][::-1], color="#1f77b4")
        axes.set_xlim(0, 1)
        axes.set_xlabel("test accuracy")
        axes.tick_params(axis="y", labelsize="small")

    return draw


def _confusions(details: dict) -> Callable[[Any], None]:
    test, classes = details.get("test"), details.get("classes", ())

    def draw(figure: Any) -> None:
        pairs = top_pairs(test["confusion"]) if test else []
        if not pairs:
            raise _NoData("no test split evaluation" if not test else "no misclassified test image")
        axes = figure.add_subplot(1, 1, 1)
        labels = [f"{classes[t]} → {classes[p]}" for t, p, _ in pairs]
        axes.barh(labels[::-1], [n for _, _, n in pairs][::-1], color="#c0392b")
        axes.set_xlabel("test images")
        axes.tick_params(axis="y", labelsize="small")

    return draw


@torch.inference_mode()
def confusion_thumbnails(
    net: nn.Module, splits: data.Splits, config: TrainConfig, confusion: list[list[int]], device: torch.device
) -> dict[str, str]:
    """For each top confusion pair "true,predicted", one test image of it as a base64 PNG thumbnail: the
    pair's true class is run through the model until an image is predicted as the pair's other class."""
    preprocessing = for_config(config)
    folder = data.SkippingImageFolder(
        splits.test, splits.classes, preprocessing.transform(), preprocessing.open
    )
    paths: dict[int, list[str]] = {}
    for path, label in folder.folder.samples:
        paths.setdefault(label, []).append(path)
    net.eval()
    found: dict[str, str] = {}
    for true, predicted, _ in top_pairs(confusion):
        for path in paths.get(true, [])[:256]:
            image = preprocessing.open(path)
            if image is None:
                continue
            batch = preprocessing.transform()(image).unsqueeze(0).to(device)
            if int(net(batch.float()).argmax(1)) == predicted:
                found[f"{true},{predicted}"] = _thumbnail(image)
                break
    return found


def _thumbnail(image: Any) -> str:
    image = image.copy()
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _number(value: Any, digits: int = 4) -> str:
    return (
        f"{value:.{digits}f}"
        if isinstance(value, float) and math.isfinite(value)
        else html.escape(str(value))
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _summary(details: dict) -> str:
    config, rules = details["config"], details["rules"]
    metrics = details.get("metrics", {})
    hosts = max(len(config.get("hosts") or ()), 1)
    hours = details.get("seconds", 0) / 3600
    instance = config.get("instance_type") or ""
    cost = (
        f"{hosts} x {html.escape(instance)} for {hours:.2f} h = <b>{hosts * hours:.2f} instance-hours</b>"
        if instance
        else f"{hosts} host(s) for {hours:.2f} h = {hosts * hours:.2f} host-hours "
        "(instance type unknown: not a SageMaker job)"
    )
    head = (
        "pretrained"
        if config.get("weights") == "imagenet"
        else f"weights {html.escape(str(config.get('weights')))}"
    )
    rows = [
        [
            "What",
            f"{html.escape(config['backbone'])} ({head}, {html.escape(config['head'])} head, "
            f"{'backbone frozen' if config.get('freeze_backbone') else 'full fine-tuning'}) on "
            f"{len(details.get('classes', ()))} classes from {html.escape(config['data'])}",
        ],
        ["Job", html.escape(config.get("job_name") or "(no job name)")],
        [
            "Where",
            f"{details.get('world_size', 1)} process(es) on {html.escape(details.get('device', '?'))}, "
            f"{hosts} host(s)",
        ],
        [
            "How long",
            f"{_duration(details.get('seconds', 0))}; {len(rules['epochs'])} of {config['epochs']} epochs",
        ],
        ["Cost", cost],
        ["Best epoch", f"{rules['best_epoch']} (the model directory holds its weights)"],
        ["Ended", html.escape(str(rules.get("ended")))],
    ]
    if metrics:
        rows.append(
            [
                "Final metrics",
                f"validation accuracy {_number(metrics.get('val_accuracy'))}, "
                f"loss {_number(metrics.get('val_loss'))}; "
                f"test accuracy {_number(metrics.get('test_accuracy'))}, "
                f"loss {_number(metrics.get('test_loss'))}",
            ]
        )
    findings = rules["findings"]
    rows.append(["Findings", _findings_text(findings)])
    return _table([[f"<b>{k}</b>", v] for k, v in rows], ["", ""])


def _findings_text(findings: list[dict]) -> str:
    if not findings:
        return '<span class="ok">none: every rule stayed silent</span>'
    items = []
    for f in findings:
        figures = ", ".join(
            f"{k} {_number(v, 4) if isinstance(v, float) else html.escape(str(v))}"
            for k, v in f["figures"].items()
        )
        items.append(
            f'<li class="{f["action"]}">{html.escape(f["rule"])} ({f["action"]}) at epoch {f["epoch"]}, '
            f"step {f['step']}: {figures}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _rules_table(rules: dict) -> str:
    rows = []
    for name, rule in rules["rules"].items():
        thresholds = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in rule["thresholds"].items()) or "-"
        rows.append([html.escape(name), rule["action"], html.escape(thresholds), rule["findings"]])
    return _table(rows, ["rule", "action", "thresholds", "findings"])


def _epochs_table(epochs: list[dict], best: int | None) -> str:
    keys = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "images_per_second")
    rows = [[("<b>%d</b>" if e["epoch"] == best else "%d") % e["epoch"], *(_number(e[k]) for k in keys),
             f"{100 * e['data_wait_share']:.0f}%"] for e in epochs]  # fmt: skip
    return _table(rows, ["epoch", *(k.replace("_", " ") for k in keys), "data wait"])


def _activations_table(activations: dict) -> str:
    if not activations:
        return "<p>Not recorded (a resumed run records them at its first step only).</p>"
    rows = [[html.escape(g), _number(s["mean"]), _number(s["std"]), f"{100 * s['zero_fraction']:.1f}%"]
            for g, s in activations.items()]  # fmt: skip
    return _table(rows, ["layer group", "mean", "std", "zeros"])


def _confusion_table(details: dict) -> str:
    test, classes = details.get("test"), details.get("classes", ())
    if not test:
        return ""
    rows = []
    for true, predicted, count in top_pairs(test["confusion"]):
        thumbnail = test["thumbnails"].get(f"{true},{predicted}")
        image = (
            f'<img alt="a misclassified test image" src="data:image/png;base64,{thumbnail}">'
            if thumbnail
            else "-"
        )
        rows.append([html.escape(classes[true]), html.escape(classes[predicted]), count, image])
    return _table(rows, ["true class", "predicted as", "test images", "one of them"])


def render(details: dict) -> str:
    """The page, from what Insight.write gathered: config, rules (rules.json), history, system, test."""
    config = details["config"]
    history = details["history"]
    groups = sorted(
        {k.split("/", 1)[1] for r in history for k in r if k.startswith("grad_norm/")}, key=_order
    )
    plots = {
        "curves": _figure("curves", "Loss and accuracy per epoch, train and validation", _curves(details)),
        "learning_rate": _figure(
            "learning_rate", "Learning rate", _lines(details, ["lr"], "learning rate"), 2.5
        ),
        "gradients": _figure(
            "gradients",
            f"Gradient norm and update-to-weight ratio per layer group ({', '.join(groups) or 'none'})",
            _gradients(details),
        ),
        "step_time": _figure(
            "step_time",
            "Step time: data wait, forward+backward, all-reduce wait, optimizer",
            _step_time(details),
        ),
        "throughput": _figure(
            "throughput", "Training images/s", _lines(details, ["images_per_second"], "images/s"), 2.5
        ),
        "system": _figure(
            "system", "CPU per core, memory, GPU utilisation and memory (sampled)", _system(details)
        ),
        "findings": _figure("findings", "Rule findings over time", _findings(details), 2.8),
        "worst_classes": _figure(
            "worst_classes",
            f"Test split: the {WORST_CLASSES} worst classes by accuracy",
            _worst(details),
            4.5,
        ),
        "confusions": _figure(
            "confusions", f"Test split: the top {TOP_PAIRS} confusion pairs", _confusions(details), 3.5
        ),
    }
    rules = details["rules"]
    title = f"Kennel training report: {config.get('job_name') or config['backbone']}"
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            '<section id="summary">',
            _summary(details),
            "</section>",
            "<h2>Curves</h2>",
            plots["curves"],
            _epochs_table(rules["epochs"], rules["best_epoch"]),
            "<h2>Optimisation</h2>",
            plots["learning_rate"],
            plots["gradients"],
            "<p>Activations per layer group at the first step:</p>",
            _activations_table(details.get("activations", {})),
            "<h2>Where the time went</h2>",
            plots["step_time"],
            plots["throughput"],
            plots["system"],
            '<h2 id="rules">Rules</h2>',
            plots["findings"],
            _rules_table(rules),
            "<h2>Test split</h2>",
            plots["worst_classes"],
            plots["confusions"],
            _confusion_table(details),
            "</body></html>",
        ]
    )
