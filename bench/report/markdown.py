"""docs/benchmarks.md from the benchmarks' results: the commands that made them, the ratios, the goals as
judged, the tables and how it was measured."""

from kennel_serve.settings import VARIABLES

from bench.report import judge
from bench.report.judge import LARGE_P99_GOAL_MS, LARGE_RATIO_GOAL, Goal
from bench.report.load import (
    KENNEL,
    KENNEL_FP32,
    KENNEL_INT8,
    PEERS,
    TS_DEFAULT,
    TS_TUNED,
    Results,
    ceiling,
    cold,
    median,
    payload_point,
    point,
)

COMMANDS = """make bench
# which runs, after `make build` and `pip install -r bench/requirements.txt` into .venv:
.venv/bin/python -m bench.peers.host install       # BentoML's and LitServe's environments under .kennel/
.venv/bin/python -m bench.serve --out bench/results/serving.json
.venv/bin/python -m bench.train_throughput --out bench/results/training.json
.venv/bin/python -m bench.report
# and, run by hand before the report (the report reads their results when they are there):
.venv/bin/python -m bench.decode_agreement --out bench/results/decode.json
.venv/bin/python -m bench.gpu --out bench/results/gpu.json   # on a GPU machine; elsewhere it says so
# the serving image before a change as kennel-serve:before, after it as kennel-serve:local:
.venv/bin/python -m bench.memory_ab --before kennel-serve:before --after kennel-serve:local
.venv/bin/python -m bench.latency --image kennel-serve:before --image kennel-serve:local --reps 5 \
    --out bench/results/latency.json
# the settings' sweeps, and OpenVINO beside ONNX Runtime (from its own environment, bench/runtime_ab.py):
.venv/bin/python -m bench.peers.sweep --seconds 5 --reps 2 --out bench/results/peers_sweep.json
.venv/bin/python -m bench.peers.sweep --only kennel --reps 3 --out bench/results/kennel_sweep.json
.kennel/openvino/bin/python -m bench.runtime_ab --model-dir MODEL_DIR --out bench/results/runtime_ab.json"""


def spread(values: list[float], digits: int = 1) -> str:
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def ratio_lines(serving: dict, figures: dict) -> list[str]:
    rps, p99, first, pipeline = figures["rps"], figures["p99"], figures["first"], figures["pipeline"]
    lines = [
        f"- **Kennel fp32 / TorchServe default** at concurrency 16: **{figures['vs_default']:.2f}x** the "
        f"requests/s ({rps[KENNEL_FP32]:.1f} against {rps[TS_DEFAULT]:.1f}); p99 {p99[KENNEL_FP32]:.0f} ms "
        f"against {p99[TS_DEFAULT]:.0f} ms.",
        f"- **Kennel fp32 / TorchServe tuned** at concurrency 16: **{figures['vs_tuned']:.2f}x** "
        f"({rps[KENNEL_FP32]:.1f} against {rps[TS_TUNED]:.1f}); p99 {p99[KENNEL_FP32]:.0f} ms against "
        f"{p99[TS_TUNED]:.0f} ms.",
        f"- **Kennel fp32 / in-process ceiling** (decode + preprocessing + ONNX Runtime fp32, best batch) at "
        f"concurrency 16: **{figures['vs_ceiling']:.2f}** ({rps[KENNEL_FP32]:.1f} against {pipeline:.1f} "
        "img/s).",
        f"- **First prediction after start**: Kennel {first[KENNEL_FP32]:.1f} s, TorchServe (default) "
        f"{first[TS_DEFAULT]:.1f} s: **{figures['cold']:.1f}x** sooner.",
        f"- **Image size**: Kennel {serving['footprints']['kennel_image'] / 1e6:.0f} MB, "
        f"**{figures['size']:.1f}x** "
        "smaller than AWS's PyTorch CPU inference image (4.9 GB, cited, not pulled).",
    ]
    if "int8_vs_tuned" in figures:
        lines += [
            "- **Kennel INT8 / Kennel fp32** at concurrency 16: "
            f"**{rps[KENNEL_INT8] / rps[KENNEL_FP32]:.2f}x**; "
            f"**INT8 / TorchServe tuned**: **{figures['int8_vs_tuned']:.2f}x** (p99 {p99[KENNEL_INT8]:.0f} "
            "ms "
            f"against {p99[TS_TUNED]:.0f} ms); **INT8 / fp32 in-process ceiling**: "
            f"**{rps[KENNEL_INT8] / pipeline:.2f}**.",
        ]
    return lines


def payload_ratio_lines(serving: dict) -> list[str]:
    if KENNEL_INT8 not in serving["servers"] or not payload_point(serving, KENNEL_INT8, "12 MP", "rps"):
        return []
    large = median(payload_point(serving, KENNEL_INT8, "12 MP", "rps"))
    small = median(point(serving, KENNEL_INT8, 16, "rps"))
    p99 = {
        name: median(payload_point(serving, name, "12 MP", "p99"))
        for name in serving["servers"]
        if payload_point(serving, name, "12 MP", "p99")
    }
    return [
        f"- **Kennel INT8, 12 MP / 500x375** throughput at concurrency 16: **{large / small:.2f}** "
        f"({large:.1f} against {small:.1f} req/s; goal at least {LARGE_RATIO_GOAL}).",
        "- **p99 at concurrency 16, 12 MP**: "
        + ", ".join(f"{name} {value:.0f} ms" for name, value in p99.items())
        + f" (goal at most {LARGE_P99_GOAL_MS} ms).",
    ]


def goal_table(goals: list[Goal]) -> list[str]:
    lines = ["| goal | figure | result | why |", "|---|---|---|---|"]
    lines += [
        f"| {goal} | {figure} | {'**met**' if met else '**missed**'} | {why} |"
        for goal, figure, met, why in goals
    ]
    return lines


def payload_table(serving: dict) -> list[str]:
    sizes = serving.get("payload_bytes", {})
    lines = [
        "| server | payload | req/s | p50 ms | p99 ms | failed | memory after, MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, server in serving["servers"].items():
        runs = [run for run in server["runs"] if "payloads" in run]
        if not runs:
            continue
        small = [run["points"]["16"] for run in runs]
        memory = [run["memory_bytes"] / 1e6 for run in runs]
        lines.append(
            f"| {name} | 500x375, {sizes.get('500x375', 0) / 1e3:.0f} kB "
            f"| {spread([r['rps'] for r in small])} "
            f"| {spread([r['p50'] for r in small], 0)} | {spread([r['p99'] for r in small], 0)} "
            f"| {sum(r['failed'] for r in small)} | {spread(memory, 0)} |"
        )
        for payload in (key for key in runs[0]["payloads"] if key != "memory_bytes"):
            points = [run["payloads"][payload] for run in runs]
            memory = [run["payloads"]["memory_bytes"] / 1e6 for run in runs]
            lines.append(
                f"| {name} | {payload}, {sizes.get(payload, 0) / 1e6:.1f} MB "
                f"| {spread([r['rps'] for r in points])} | {spread([r['p50'] for r in points], 0)} "
                f"| {spread([r['p99'] for r in points], 0)} | {sum(r['failed'] for r in points)} "
                f"| {spread(memory, 0)} |"
            )
    return lines


def loadtest_lines(serving: dict) -> list[str]:
    if "loadtest" not in serving:
        return []
    test = serving["loadtest"]
    return [
        "",
        f"`deploy loadtest` against a fresh {test['server']} container (`{test['command']}`, every other "
        f"flag at its default), right after wrk's concurrency-16 point on the same container:",
        "",
        "| load generator | req/s | note |",
        "|---|---|---|",
        f"| wrk, closed loop, concurrency 16 | {test['closed_c16_rps']:.1f} | "
        f"p99 {test['closed_c16_p99']:.0f} ms |",
        f"| loadtest, closed-loop probe (16 in flight) | {test['saturation_rps']:.1f} | |",
        f"| loadtest, highest sustained open-loop rate | {test['rps']:.1f} | "
        f"{'a lower bound' if test['lower_bound'] else 'bracketed'}; the run took {test['seconds']:.0f} s |",
        "",
        "```",
        test["output"].strip(),
        "```",
    ]


def decode_lines(decode: dict | None) -> list[str]:
    if decode is None:
        return []
    lines = [
        "## JPEG decoding at reduced scale",
        "",
        "The serving image decodes a JPEG at the smallest of libjpeg's 1/2, 1/4 and 1/8 scales (Pillow's "
        f"`draft`) that keeps at least {decode['default_margin']:g}x the resize target, then runs the "
        "manifest's resize as before; PNG and other formats decode in full. "
        "`bench/decode_agreement.py` compares its predictions with those on the full decode of the same "
        "photos, through the training package's evaluation transform.",
        "",
        f"- Photos: {decode['photos']} photo stand-ins from `bench/photos.py` (1/f-spectrum scenes with a "
        "lit, textured subject, lens blur, vignette, sensor grain; JPEG quality 90, 4:2:0), at "
        + ", ".join(f"{w}x{h}" for w, h in decode["sizes"])
        + f" ({decode['jpeg_bytes']['min'] / 1e6:.2f}-{decode['jpeg_bytes']['max'] / 1e6:.2f} MB).",
        f"- Classifier: no trained weights can be downloaded here, and a random-weights network is no "
        f"judge (its top-1 is one class for every picture, or a near tie). So: the {decode['backbone']} "
        "stem and first stage with random weights, batch-norm statistics calibrated on photo stand-ins, and "
        f"a linear head fitted to tell {decode['classes']} subject colours apart. On the full decodes it "
        f"predicts all {decode['reference_classes']} classes and is right on "
        f"{decode['reference_accuracy']:.0%} (chance {1 / decode['classes']:.0%}): its answers follow the "
        "pictures' content, so a decode that changed what it sees would change them.",
        "",
        "| decoded at least | top-1 agreement with full decode | largest probability difference "
        "| decode + preprocessing, ms per photo (one thread) |",
        "|---|---|---|---|",
        f"| full size (reference) | - | - | {decode['full_ms']:.1f} |",
    ]
    for margin, figures in decode["margins"].items():
        chosen = " (served)" if float(margin) == decode["default_margin"] else ""
        lines.append(
            f"| {float(margin):g}x the resize target{chosen} | {figures['top1_agreement']:.1%} "
            f"| {figures['max_probability_difference']:.4f} | {figures['ms']:.1f} |"
        )
    lines += [
        "",
        "At 1x the decoded image is about the resize target, so the resize barely averages and shifts "
        "pixels by fractions of a pixel instead: the largest differences. More margin brings the reduced "
        "decode closer to the full one, at about the same time: reading the whole file's entropy-coded data "
        f"costs the same at every scale. {decode['default_margin']:g}x is served; it decodes a 12 MP photo "
        "at 1/4 scale (1008x756). `tests/serve/test_decode.py` keeps top-1 agreement at 99% or more on 100 "
        "photos of 2 to 5.6 MP.",
    ]
    return lines


def gpu_lines(gpu: dict | None) -> list[str]:
    if gpu is None:
        return [
            "## GPU",
            "",
            "No GPU figures yet: no GPU machine was available. `bench/gpu.py` is ready: on a machine with an "
            "NVIDIA GPU and the NVIDIA container toolkit it measures the trainer's images/s with AMP and "
            "channels_last against fp32 (ResNet-50, 224 px, synthetic data) and the GPU serving image's "
            "throughput, and writes bench/results/gpu.json for this report; without a GPU it says so and "
            "exits 0. The GPU serving variant (`docker build --build-arg REQUIREMENTS=requirements-gpu.txt "
            "-f containers/serve/Dockerfile .`) builds here: 2778 MB uncompressed against the CPU image's "
            "332 MB, and without a GPU it serves on the CPU with a warning in its log.",
        ]
    training, serving = gpu["training"], gpu["serving"]
    lines = [
        "## GPU",
        "",
        f"{', '.join(gpu['gpus'])}; {gpu['cpus']} CPUs. Training: `python -m bench.train_throughput "
        "--backbone resnet50 --size 224` (synthetic data), trainer images/s, best of 3 epochs:",
        "",
        "| mode | images/s |",
        "|---|---|",
    ]
    lines += [
        f"| {mode} ({training[mode]['amp_dtype']}, channels_last {training[mode]['channels_last']}) "
        f"| {training[mode]['images_per_s']:.1f} |"
        for mode in ("AMP + channels_last", "fp32")
    ]
    lines += [
        f"| speed-up | {training['speedup']:.2f}x |",
        "",
        f"Serving: `{serving['image']}` ({serving['image_bytes'] / 1e6:.0f} MB), fp32 ResNet-50 on "
        f"{serving['served_on']}, no CPU limit:",
        "",
        "| payload, concurrency | req/s | p50 ms | p99 ms | failed |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {p['rps']:.1f} | {p['p50']:.0f} | {p['p99']:.0f} | {p['failed']} |"
        for name, p in serving["points"].items()
    ]
    return lines


def serving_table(serving: dict) -> list[str]:
    lines = [
        "| server | concurrency | req/s | p50 ms | p99 ms | failed | wrk CPU ms per request |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in serving["servers"]:
        for c in ("1", "4", "16"):
            runs = [run["points"][c] for run in serving["servers"][name]["runs"]]
            cpu = sum(r.get("client_cpu_s", r.get("ab_cpu_s", 0.0)) for r in runs)
            client_ms = 1000 * cpu / max(1, sum(r["requests"] for r in runs))
            lines.append(
                f"| {name} | {c} | {spread([r['rps'] for r in runs])} | "
                f"{spread([r['p50'] for r in runs], 0)} "
                f"| {spread([r['p99'] for r in runs], 0)} | {sum(r['failed'] for r in runs)} "
                f"| {client_ms:.2f} |"
            )
    return lines


def start_table(serving: dict) -> list[str]:
    lines = [
        "| server | settings | start to first /ping 200, s | start to first prediction, s | memory under "
        "load, MB "
        "| precision header | top-1 = in-process reference |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = serving["reference_top1"]
    for name, server in serving["servers"].items():
        runs = server["runs"]
        agree = sum(a == b for a, b in zip(runs[0]["top1"], reference, strict=True))
        memory = [run["memory_bytes"] / 1e6 for run in runs]
        lines.append(
            f"| {name} | {server['tuning'] or 'serving image defaults'} | "
            f"{spread(cold(serving, name, 'ping_s'), 2)} "
            f"| {spread(cold(serving, name, 'first_prediction_s'), 2)} | {spread(memory, 0)} "
            f"| {runs[0]['precision'] or '-'} | {agree}/{len(reference)} |"
        )
    return lines


def peer_table(serving: dict) -> list[str]:
    """Kennel beside BentoML and LitServe serving the same ONNX file (and the tuned TorchServe for fp32):
    medians of the repetitions."""
    servers = serving["servers"]
    lines = [
        "| server | c=1 req/s | c=1 p50 ms | c=1 p99 ms | c=4 req/s | c=4 p99 ms | c=16 req/s | c=16 p50 ms "
        "| c=16 p99 ms | memory under load, MB | first prediction, s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for precision, peers in PEERS.items():
        names = [KENNEL[precision], *peers] + ([TS_TUNED] if precision == "fp32" else [])
        for name in (name for name in names if name in servers):
            figures = [
                median(point(serving, name, c, key))
                for c, key in ((1, "rps"), (1, "p50"), (1, "p99"), (4, "rps"), (4, "p99"), (16, "rps"))
            ] + [median(point(serving, name, 16, key)) for key in ("p50", "p99")]
            memory = median([run["memory_bytes"] / 1e6 for run in servers[name]["runs"]])
            first = median(cold(serving, name, "first_prediction_s"))
            lines.append(
                f"| {name} | {figures[0]:.1f} | {figures[1]:.0f} | {figures[2]:.0f} | {figures[3]:.1f} "
                f"| {figures[4]:.0f} | {figures[5]:.1f} | {figures[6]:.0f} | {figures[7]:.0f} | {memory:.0f} "
                f"| {first:.2f} |"
            )
    return lines


def sweep_table(sweep: list) -> list[str]:
    """A sweep's configurations, per precision: median and min-max over its passes."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in sweep:
        groups.setdefault((row["precision"], row["server"]), []).append(row)
    lines = [
        "| precision | configuration | passes | c=1 req/s | c=1 p99 ms | c=16 req/s | c=16 p99 ms | failed "
        "| memory, MB | 1-minute load average |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (precision, server), rows in groups.items():
        c1, c16 = [row["points"]["1"] for row in rows], [row["points"]["16"] for row in rows]
        load = [row["load_average"] for row in rows if "load_average" in row]
        lines.append(
            f"| {precision} | {server} | {len(rows)} | {spread([p['rps'] for p in c1])} "
            f"| {spread([p['p99'] for p in c1], 0)} | {spread([p['rps'] for p in c16])} "
            f"| {spread([p['p99'] for p in c16], 0)} | {sum(p['failed'] for p in c16)} "
            f"| {spread([row['memory_bytes'] / 1e6 for row in rows], 0)} "
            f"| {spread(load) if load else '-'} |"
        )
    return lines


def sweep_client(sweep: list) -> str:
    """The load generator a sweep was measured with: wrk since its points record it, ab before."""
    return next(iter(sweep[0]["points"].values())).get("client", "ab")


def peer_lines(serving: dict, sweep: list | None) -> list[str]:
    """The side-by-side table with the peers and the sweep their settings come from, when they ran."""
    swept = (
        [
            "The sweep the peers' settings come from (`python -m bench.peers.sweep --out "
            f"bench/results/peers_sweep.json`: each configuration afresh, {sweep_client(sweep)} at "
            "concurrency 1 and 16, "
            f"{sweep[0]['seconds']:g} s per point, the passes interleaved, on the shared machine; the best "
            "median throughput at concurrency 16 per peer and precision is what `make bench` runs, in "
            "`PEERS_TUNED` of bench/serve.py):",
            "",
            *sweep_table(sweep),
            "",
        ]
        if sweep
        else []
    )
    if not any(name in serving["servers"] for names in PEERS.values() for name in names):
        return swept
    return [
        "Kennel, BentoML and LitServe on the same ONNX files with the same decoding and preprocessing, each "
        "at its best configuration for these cores (medians of the repetitions; every figure with its spread "
        "is in the tables below):",
        "",
        *peer_table(serving),
        "",
        "BentoML's workers are processes that each accept their own connections, and a client that opens "
        "its keep-alive connections at once, as wrk does, often finds all of them on one worker: its "
        "concurrency-16 figures then range from one worker's throughput to two workers'. LitServe's HTTP "
        "process hands every request to whichever worker is free. Kennel's supervisor deals the "
        "connections to its two INT8 workers in turn (16 connections are 8 and 8), and its one fp32 worker "
        "has one queue for all of them.",
        "",
        *swept,
    ]


def _sweep_medians(sweep: list, precision: str) -> dict[str, dict[str, float]]:
    """Per configuration of one precision: median c=16 req/s (and its range) and p99, c=1 req/s, and memory
    in MB."""
    groups: dict[str, list[dict]] = {}
    for row in sweep:
        if row["precision"] == precision:
            groups.setdefault(row["server"], []).append(row)
    return {
        server: {
            "rps": median([row["points"]["16"]["rps"] for row in rows]),
            "low": min(row["points"]["16"]["rps"] for row in rows),
            "high": max(row["points"]["16"]["rps"] for row in rows),
            "p99": median([row["points"]["16"]["p99"] for row in rows]),
            "c1": median([row["points"]["1"]["rps"] for row in rows]),
            "mb": median([row["memory_bytes"] / 1e6 for row in rows]),
        }
        for server, rows in groups.items()
    }


def choices_lines(results: Results) -> list[str]:
    """Why the serving image runs as it does, from the measurements that decided it (when they are here)."""
    lines = []
    if results.kennel_sweep:
        for precision in ("fp32", "int8"):
            configs = _sweep_medians(results.kennel_sweep, precision)
            if not configs:
                continue
            described = "; ".join(
                f"{server.removeprefix('Kennel ')}: {f['rps']:.1f} req/s ({f['low']:.1f} to "
                f"{f['high']:.1f}), p99 {f['p99']:.0f} ms, {f['c1']:.1f} req/s at concurrency 1, "
                f"{f['mb']:.0f} MB"
                for server, f in configs.items()
            )
            lines.append(
                f"- {precision} at concurrency 16, medians (and range) of the Kennel sweep's passes: "
                f"{described}."
            )
        lines.append(
            "- So the serving image runs an INT8 model in two workers, each with ONNX Runtime's threads = "
            "the CPUs: idle threads sleep, so a lone request has every core, and under load the two "
            "processes decode, parse HTTP and run the model side by side instead of in one interpreter. The "
            "supervisor deals the clients' connections to the workers in turn; with uvicorn's shared "
            "listening socket one worker often took a whole burst of keep-alive connections. Two "
            "single-threaded workers serve as much under load but give a lone request one thread. fp32 stays "
            "at one worker: a second copy costs about 200 MB (over the 400 MB goal) and two fp32 workers "
            "served less here. Both run, by "
            f"default, {VARIABLES['KENNEL_CONCURRENT_BATCHES'][0]} batch(es) at once of at most "
            f"{VARIABLES['KENNEL_MAX_BATCH_SIZE'][0]} images: a batch of 4 holds its requests a quarter as "
            "long as a batch of 16."
        )
    if results.latency:
        rounds = results.latency["rounds"]
        images = list(rounds[0]["served"])
        if len(images) == 2:
            before, after = images
            cpu = [median([r["served"][image]["server_cpu_ms"] for r in rounds]) for image in images]
            paired = [r["served"][after]["rps"] / r["served"][before]["rps"] for r in rounds]
            lines.append(
                f"- {results.latency.get('note') or 'A lone INT8 request'}: {before} against {after} "
                f"({len(rounds)} rounds): "
                f"server CPU per request {cpu[0]:.1f} ms against {cpu[1]:.1f} ms; requests/s at "
                "concurrency 1, after over before, per round: "
                + ", ".join(f"{ratio:.2f}" for ratio in paired)
                + "."
            )
        spin = [
            median([r["steps"][key] for r in rounds]) for key in ("model_b1_spin_off", "model_b1_spin_on")
        ]
        lines.append(
            f"- ONNX Runtime's spinning threads at batch 1: {spin[1]:.1f} ms against {spin[0]:.1f} ms "
            "sleeping between operators, on this shared machine: a spinning thread takes a core that "
            "another process (or the server's own decoder) wants. Spinning stays off, also for a lone "
            "request."
        )
    if results.runtime_ab:
        rows, differences = (
            results.runtime_ab["images_per_second"],
            results.runtime_ab["largest_logit_difference"],
        )
        figures = {key: median(values) for key, values in rows.items()}
        lines.append(
            "- OpenVINO (median img/s, ONNX Runtime / OpenVINO defaults / OpenVINO f32): "
            + "; ".join(
                f"{key} {figures[f'{key} onnxruntime']:.1f} / {figures[f'{key} openvino']:.1f} / "
                f"{figures[f'{key} openvino f32']:.1f}"
                for key in dict.fromkeys(k.rsplit(" ", 1)[0] for k in rows if k.endswith(" onnxruntime"))
            )
            + f". Its defaults compute in bf16 on this CPU (logits up to {max(differences.values()):.2f} "
            "from ONNX Runtime's, against the serving image's 1e-4 parity with PyTorch); held to f32 it "
            "is no faster than ONNX Runtime here. Its wheel is about 180 MB: beside ONNX Runtime the image "
            "would pass 490 MB. The serving image keeps ONNX Runtime."
        )
    return ["", "## Serving choices, measured", "", *lines, ""] if lines else []


def kennel_sweep_lines(sweep: list | None) -> list[str]:
    """Kennel's own workers x threads x batches at once, per precision (`bench.peers.sweep --only kennel`)."""
    if not sweep:
        return []
    return [
        "",
        "Kennel's processes and threads (`python -m bench.peers.sweep --only kennel --reps 3 --out "
        "bench/results/kennel_sweep.json`: SAGEMAKER_MODEL_SERVER_WORKERS, ONNX Runtime threads per worker "
        "from KENNEL_CPUS, KENNEL_CONCURRENT_BATCHES, KENNEL_MAX_BATCH_SIZE; the passes interleave the "
        f"configurations; {sweep_client(sweep)} at concurrency 1 and 16; the serving image's defaults come "
        "from it):",
        "",
        *sweep_table(sweep),
        "",
    ]


def latency_lines(latency: dict | None) -> list[str]:
    """`python -m bench.latency`'s breakdown of a lone request, when it has run."""
    if not latency:
        return []
    rounds = latency["rounds"]
    names = {
        "decode": "JPEG header and reduced-scale decode",
        "preprocess": "preprocessing (resize, crop, normalise)",
        "model_b1_spin_off": "model at batch 1, ONNX Runtime threads sleeping between operators (served)",
        "model_b1_spin_on": "model at batch 1, ONNX Runtime threads spinning",
        "answer": "softmax, top-5, JSON",
        "thread_hop": "one hand-off to a thread pool and back (uvloop)",
        "sequential_bound": "sequential bound: decode + preprocessing + model + answer, one loop",
    }
    lines = [
        f"Where a lone {latency['precision'].upper()} request's milliseconds go (`python -m bench.latency`, "
        f"{len(rounds)} interleaved rounds on the shared machine; median, min-max):",
        "",
        "| step | ms |",
        "|---|---|",
    ]
    for key, name in names.items():
        lines.append(f"| {name} | {spread([r['steps'][key] for r in rounds], 2)} |")
    bound = median([r["steps"]["sequential_bound"] for r in rounds])
    first = next(iter(rounds[0]["served"].values()), {})
    paired = "sequential_bound_rps" in first
    lines += ["", f"Served: {first.get('client', 'ab')} at concurrency 1 against the image's container"
              + (", with the sequential bound measured for 3 s just before and just after each point; the "
                 "share is the median of the rounds' paired ratios." if paired else "; the share is against "
                 "the bound of the table above."),
              "", "| served by | req/s at concurrency 1 | mean ms | p99 ms | of the sequential bound "
              "| server CPU ms per request | server threads waiting for a CPU, ms per request |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for image in rounds[0]["served"]:
        points = [r["served"][image] for r in rounds]
        mean = median([p["mean_ms"] for p in points])
        share = median([p["rps"] / p["sequential_bound_rps"] for p in points]) if paired else bound / mean
        lines.append(
            f"| {image} | {spread([p['rps'] for p in points])} | {mean:.1f} | "
            f"{spread([p['p99'] for p in points], 0)} | {share:.2f} "
            f"| {spread([p['server_cpu_ms'] for p in points])} "
            f"| {spread([p['server_wait_ms'] for p in points]) if 'server_wait_ms' in points[0] else '-'} |"
        )
    return ["", *lines, ""]


def runtime_lines(runtime_ab: dict | None) -> list[str]:
    """`python -m bench.runtime_ab`'s ONNX Runtime against OpenVINO, when it has run."""
    if not runtime_ab:
        return []
    rows = runtime_ab["images_per_second"]
    versions = runtime_ab["versions"]
    lines = [
        f"ONNX Runtime {versions['onnxruntime']} against OpenVINO {versions['openvino']} on the same files, "
        "in one process, 2 threads, interleaved (`python -m bench.runtime_ab`; img/s, median and min-max):",
        "",
        "| model | batch | ONNX Runtime (served) | OpenVINO, its defaults | OpenVINO held to f32 "
        "| largest logit difference from ONNX Runtime: defaults / f32 |",
        "|---|---|---|---|---|---|",
    ]
    differences = runtime_ab["largest_logit_difference"]
    for key in dict.fromkeys(key.rsplit(" ", 1)[0] for key in rows if key.endswith(" onnxruntime")):
        precision, batch = key.split()
        lines.append(
            f"| {precision} | {batch[1:]} | {spread(rows[f'{key} onnxruntime'])} | "
            f"{spread(rows[f'{key} openvino'])} | {spread(rows[f'{key} openvino f32'])} | "
            f"{differences[f'{key} openvino']:.3f} / {differences[f'{key} openvino f32']:.4f} |"
        )
    return ["", *lines, ""]


def ceiling_table(serving: dict) -> list[str]:
    lines = ["| model | stage | batch | img/s |", "|---|---|---|---|"]
    for key in serving["ceilings"][0]:
        precision, stage, batch = key.split()
        lines.append(f"| {precision} | {stage} | {batch[1:]} | {spread(ceiling(serving, key))} |")
    return lines


def size_table(serving: dict) -> list[str]:
    parts = serving["footprints"]
    ts_parts = {
        key.removeprefix("torchserve_"): value for key, value in parts.items() if key != "kennel_image"
    }
    detail = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in ts_parts.items())
    return [
        "| what | size |",
        "|---|---|",
        "| Kennel serving image (`docker image inspect`, uncompressed) | "
        f"{parts['kennel_image'] / 1e6:.0f} MB |",
        f"| TorchServe as installed here ({detail}) | {sum(ts_parts.values()) / 1e6:.0f} MB |",
        "| AWS DLC pytorch-inference 2.6 CPU image (cited: `image_size_baseline: 4900`) | 4900 MB |",
    ]


def machine_lines(serving: dict) -> list[str]:
    m = serving["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    return [
        f"- {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python {m['python']}; "
        f"Docker Engine {m['docker_server']}; {m['java']}; {versions}.",
        f"- 1-minute load average {serving['load_start'][0]:.2f} at the start of the serving run and "
        f"{serving['load_end'][0]:.2f} at its end (the machine is shared; wrk, the servers and the ceilings "
        "ran on the same two cores).",
    ]


def training_lines(training: dict) -> list[str]:
    best = training["best"]
    return [
        "## Training",
        "",
        f"`bench/train_throughput.py`: {training['backbone']} from random weights, {training['size']} px "
        "synthetic "
        f"images ({training['images_per_epoch']} per epoch), batch {training['batch_size']}, on "
        f"{training['device']}; the trainer's `train_one_epoch` (label smoothing, per-step LR schedule, "
        "SIGTERM "
        "poll, on-device metric sums) against a bare loop (forward, cross-entropy, backward, AdamW step) "
        "over the "
        f"same loader and model, alternating, best of {training['rounds']} epochs each after one warm-up "
        "epoch.",
        "",
        "| loop | images/s (best) | all rounds |",
        "|---|---|---|",
        f"| trainer | {best['trainer']:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in training['images_per_s']['trainer'])} |",
        f"| bare PyTorch | {best['bare']:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in training['images_per_s']['bare'])} |",
        f"| ratio | {training['ratio']:.3f} | |",
    ]


def notes(serving: dict) -> list[str]:
    jpeg = serving["jpeg_bytes"]
    int8 = serving.get("quantization")
    lines = [
        "## How it was measured",
        "",
        "- Model: torchvision ResNet-50 with **random weights** (seed 0; no pretrained weights can be "
        "downloaded "
        "here) and 133 classes: right for speed, meaningless for accuracy. Kennel serves the ONNX file "
        "written by "
        "the training image's export code; TorchServe serves a TorchScript trace of the same weights with "
        "its "
        "built-in `image_classifier` handler (torchvision Resize 256, CenterCrop 224, the same "
        "normalisation).",
        f"- Payload: {len(jpeg)} deterministic 500x375 JPEGs ({min(jpeg) // 1000}-{max(jpeg) // 1000} kB, "
        "drawn with Pillow plus noise). wrk sends the first one, raw `image/jpeg`, over HTTP/1.1 connections "
        "kept alive (ab, HTTP/1.0, would have uvicorn close the connection after every answer, a TCP "
        "connection per request for Kennel and both peers, and not for TorchServe); the first 8 "
        "check that every server's top-1 matches the in-process reference.",
        "- Payload-size axis: a 2 MP (1632x1224) and a 12 MP (4032x3024) photo stand-in from "
        "`bench/photos.py` (natural-looking, JPEG quality 90, 4:2:0), each at concurrency 16 after 16 "
        "unrecorded requests of it, for Kennel fp32, Kennel INT8 and the tuned TorchServe, right after their "
        "500x375 points in the same interleaved repetitions.",
        "- CPU budget: the same two cores for both servers. Kennel's container runs with `--cpus=2` on the "
        "host network (no docker-proxy in the path); TorchServe runs on the host from .venv (Java 17 "
        "from Debian) under `taskset -c 0-1`, with token authorization off and model registration "
        "through the API off (its one model loads at start). Every request goes to 127.0.0.1.",
        f"- {len(serving['ceilings'])} repetitions, interleaved: each starts every server afresh (the "
        "start-up figures), warms it up with 24 requests at concurrency 4 and 24 at 16, then measures "
        f"concurrency 1, 4 and 16 for {serving['seconds']:g} s each; the in-process ceilings are measured "
        "after each round of servers. p99 over so few seconds rests on a few hundred requests per run: "
        "read it as a tail indicator, with its spread.",
        "- TorchServe's /ping answers 200 before its workers have loaded the model (and while they crash), "
        "so "
        "its /ping time is not a readiness signal; its first prediction is the figure that counts. Kennel's "
        "/ping is 200 only once the model is loaded and warmed.",
        "- Memory: Kennel, the container's cgroup RSS; TorchServe, the summed RSS of its process tree "
        "(JVM and workers); both right after the concurrency 16 point.",
        "- `failed` is wrk's count of non-2xx answers and socket errors (connect, read, write, timeout after "
        "120 s).",
        "- The load generator's own CPU time (wrk, from getrusage) is in the serving table, per request; "
        "nothing is "
        "subtracted.",
    ]
    if int8:
        lines.append(
            "- Kennel INT8: `kennel_train.quantize.quantize_model_dir` on the same weights, calibrated on "
            "the "
            f"{int8.get('calibration_images', '?')} benchmark JPEGs, guard off (random weights make "
            "agreement "
            "meaningless). Its accuracy cost is the training run's guard figures in the model's manifest, "
            "not a "
            "figure from this model."
        )
    else:
        lines.append(
            "- No Kennel INT8 rows: `kennel_train.quantize` was not available (or wrote no INT8 model) "
            "when this "
            "ran; `make bench` adds them by itself once it is."
        )
    return lines


def met(condition: bool) -> str:
    return "met" if condition else "missed"


def mib(value: int) -> str:
    return f"{value / 2**20:.0f}"


def soak_lines(soak: dict) -> list[str]:
    """The soak's tables: per minute, then the totals and the goals (zero 5xx, RSS growth under 10%)."""
    phases = soak["phases"]
    first = next(iter(phases.values()))
    minutes = len(first["windows"])
    lines = [
        "## Soak (`make soak`)",
        "",
        f"Run {soak['started']} with {soak['images']}; model: {soak['model']}. Each phase sends concurrency "
        f"{first['concurrency']} for {minutes} windows of {first['window_s']:g} s, drawing "
        + ", ".join(f"{share:.0%} {kind}" for kind, share in soak["mix"].items())
        + " requests (hostile: deep nesting, 300 000 values, a 100 000-digit number, duplicate keys, NaN, "
        "invalid UTF-8, a lone surrogate, 5000 JSON Lines lines). Every good image must get 200 and every "
        "other request 400. **The machine's 2 cores were shared with other engineers' test runs during "
        "the soak** (1-minute load average "
        + "; ".join(
            f"{name}: {phase['load_average'][0]:.1f} at the start, {phase['load_average'][1]:.1f} at the end"
            for name, phase in phases.items()
        )
        + "), so latencies are those of a busy machine, not of a quiet one.",
        "",
        "```",
        "make soak",
        "# which runs, after `make build` and `pip install -r bench/requirements.txt` into .venv:",
        ".venv/bin/python -m bench.soak --out bench/results/soak.json",
        ".venv/bin/python -m bench.report",
        "```",
    ]
    for name, phase in phases.items():
        containers = list(phase["before"])
        lines += [
            "",
            f"**{name}** (`{phase['url'].replace('127.0.0.1', 'localhost')}`):",
            "",
            "| minute | requests | 200 | 400 | other | 5xx | p99 ms | "
            + " | ".join(f"{c} RSS MiB" for c in containers)
            + " |",
            "|---" * (7 + len(containers)) + "|",
        ]
        for window in phase["windows"]:
            statuses = window["statuses"]
            server = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500)
            other = sum(n for s, n in statuses.items() if s not in ("200", "400")) - server
            memory = [mib(window["processes"][c]["rss_bytes"]) for c in containers]
            lines.append(
                f"| {window['minute']} | {window['requests']} | {statuses.get('200', 0)} | "
                f"{statuses.get('400', 0)} | {other} | {server} | {window['p99_ms']} | "
                + " | ".join(memory)
                + " |"
            )
        start = min(1, minutes - 1)  # the first minute warms up
        second, last = phase["windows"][start], phase["windows"][-1]
        growth = judge.rss_growth(phase, start)
        no_server_errors, steady = judge.soak_goals(phase, growth)
        lines += [
            "",
            f"- {phase['requests']} requests: "
            + ", ".join(f"{n} x {s}" for s, n in phase["statuses"].items())
            + f"; **{phase['server_errors']} 5xx** (goal 0: {met(no_server_errors)}); "
            f"answers other than the expected one: {sum(phase['unexpected'].values())}"
            + (
                f" ({', '.join(f'{k} x{n}' for k, n in phase['unexpected'].items())})"
                if phase["unexpected"]
                else ""
            )
            + ".",
            "- RSS growth from minute 2 to minute "
            f"{minutes}: "
            + ", ".join(
                f"{c} {value:+.1%} ({mib(second['processes'][c]['rss_bytes'])} -> "
                f"{mib(last['processes'][c]['rss_bytes'])} MiB)"
                for c, value in growth.items()
            )
            + f" (goal under 10%: {met(steady)}); range over the minutes: "
            + ", ".join(
                f"{c} {mib(min(w['processes'][c]['rss_bytes'] for w in phase['windows']))}-"
                f"{mib(max(w['processes'][c]['rss_bytes'] for w in phase['windows']))} MiB"
                for c in containers
            )
            + ".",
            "- Before and after the phase (idle): "
            + "; ".join(
                f"{c} {phase['before'][c]['fds']} -> {phase['after'][c]['fds']} open file descriptors, "
                f"{phase['before'][c]['threads']} -> {phase['after'][c]['threads']} threads, "
                f"{mib(phase['before'][c]['rss_bytes'])} -> {mib(phase['after'][c]['rss_bytes'])} MiB RSS"
                for c in containers
            )
            + ".",
        ]
    lines += ["", f"Tracebacks in the serve and proxy logs after both phases: {soak['tracebacks_in_logs']}."]
    return lines


def document(results: Results, figures: dict, goals: list[Goal], chart: str) -> str:
    """docs/benchmarks.md, with `judge`'s ratios and goals; `chart` is the serving chart's file name."""
    serving, gpu = results.serving, results.gpu
    soak = soak_lines(results.soak) if results.soak is not None else []
    sections = [
        ["# Benchmarks", "", "Written by `make bench`:", "", "```", COMMANDS, "```", "", "Machine:", ""],
        machine_lines(serving),
        ["", "## Ratios", ""],
        ratio_lines(serving, figures),
        payload_ratio_lines(serving),
        ["", "## Goals", ""],
        goal_table(goals),
        ["", "## Serving", "", f"![serving throughput and p99]({chart})", ""],
        peer_lines(serving, results.peers_sweep),
        serving_table(serving),
        ["", "Start-up, memory and agreement (median and min-max over the repetitions):", ""],
        start_table(serving),
        [
            "",
            "In-process ceilings (one process, 2 ONNX Runtime threads, the serving image's session "
            "settings):",
            "",
        ],
        ceiling_table(serving),
        kennel_sweep_lines(results.kennel_sweep),
        latency_lines(results.latency),
        runtime_lines(results.runtime_ab),
        ["", "Payload sizes at concurrency 16 (phone photos; memory right after each point):", ""],
        payload_table(serving),
        choices_lines(results),
        loadtest_lines(serving),
        ["", "Sizes:", ""],
        size_table(serving),
        [""],
        decode_lines(results.decode),
        [""],
        training_lines(results.training),
        [""],
        gpu_lines(gpu),
        [""],
        notes(serving),
        ["", *soak] if soak else [],
        [
            "",
            "Raw results: `bench/results/serving.json`, `bench/results/training.json`, "
            "`bench/results/decode.json`"
            + (", `bench/results/gpu.json`" if gpu else "")
            + (", `bench/results/soak.json`" if soak else "")
            + "".join(
                f", `bench/results/{name}.json`"
                for name, present in (
                    ("peers_sweep", results.peers_sweep),
                    ("kennel_sweep", results.kennel_sweep),
                    ("latency", results.latency),
                    ("runtime_ab", results.runtime_ab),
                )
                if present
            )
            + ".",
        ],
    ]
    return "\n".join(line for section in sections for line in section) + "\n"
