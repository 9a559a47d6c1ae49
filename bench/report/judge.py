"""The goals the benchmarks are held to, judged on their results: the headline ratios, and for each goal
its figure, whether it was met, and why."""

from typing import NamedTuple

from bench.report.load import (
    KENNEL,
    KENNEL_FP32,
    KENNEL_INT8,
    PEERS,
    TS_DEFAULT,
    TS_TUNED,
    best_ceiling,
    cold,
    median,
    payload_point,
    point,
)

AWS_CPU_IMAGE_BYTES = 4.9e9  # image_size_baseline 4900 MB of the DLC pytorch-inference 2.6 CPU image
# The goals for large photos, fp32 memory and the load test.
LARGE_RATIO_GOAL, LARGE_P99_GOAL_MS, FP32_MEMORY_GOAL_MB, LOADTEST_GOAL = 0.6, 500, 400, 0.2
# Kennel fp32 at concurrency 16 before ONNX Runtime's memory pattern was turned off (docs/benchmarks.md of
# the same machine, median of 3): the reference for "throughput within 3%".
FP32_C16_BEFORE_RPS = 29.0
# Against the peers: Kennel INT8 alone within this share of the sequential bound (the in-process pipeline at
# batch 1), and Kennel at concurrency 16 within this share of the in-process ceiling.
LONE_REQUEST_GOAL, PEER_CEILING_GOAL = 0.85, 0.9
FP32_WHY = (
    "Kennel's fp32 runs one worker and one batch of at most 4 images at a time; Serving choices has its own "
    "sweep of workers, threads, batches at once and batch size, and why fp32 keeps one worker."
)
INT8_WHY = (
    "Kennel INT8 runs two workers, each with two ONNX Runtime threads, and deals the connections to them in "
    "turn (Serving choices); LitServe's best runs two single-threaded ONNX Runtime workers behind an HTTP "
    "process that hands each request to whichever worker is free, so its workers decode and infer while "
    "its third process parses HTTP."
)
LONE_WHY = (
    "The bound is bench/serve.py's `lone_request` (the decode as served, preprocessing, the model at batch "
    "1, softmax, top 5, JSON) back to back in one process, measured for 3 s just before and just after each "
    "repetition's concurrency-1 point, so that both see the machine of that moment; the figure is the median "
    "of the paired ratios. Timed per step inside the server (`python -m bench.latency`), a lone request's "
    "decode and model take what they take in that loop; what lies above the bound is HTTP, routing, the "
    "answer and the one hand-off to the decoder thread and back. ONNX Runtime's spinning would take about 1 "
    "ms off the model at batch 1 on a quiet machine, but on contended cores it doubled it (20 to 30 against "
    "13 to 14 ms), so it stays off."
)
# The soak's goal for the serving and proxy processes' memory from its second minute to its last.
SOAK_RSS_GROWTH_GOAL = 0.10


class Goal(NamedTuple):
    goal: str
    figure: str
    met: bool
    why: str


def ratios(serving: dict) -> dict:
    """The serving run's headline figures at concurrency 16: Kennel against TorchServe, the in-process
    ceiling and AWS's image; with the medians they come from."""
    rps = {name: median(point(serving, name, 16, "rps")) for name in serving["servers"]}
    p99 = {name: median(point(serving, name, 16, "p99")) for name in serving["servers"]}
    first = {name: median(cold(serving, name, "first_prediction_s")) for name in serving["servers"]}
    pipeline = best_ceiling(serving, "fp32", "pipeline")
    figures = {
        "vs_default": rps[KENNEL_FP32] / rps[TS_DEFAULT],
        "vs_tuned": rps[KENNEL_FP32] / rps[TS_TUNED],
        "vs_ceiling": rps[KENNEL_FP32] / pipeline,
        "cold": first[TS_DEFAULT] / first[KENNEL_FP32],
        "size": AWS_CPU_IMAGE_BYTES / serving["footprints"]["kennel_image"],
    }
    if KENNEL_INT8 in serving["servers"]:
        figures["int8_vs_tuned"] = rps[KENNEL_INT8] / rps[TS_TUNED]
    return figures | {"p99": p99, "rps": rps, "first": first, "pipeline": pipeline}


def throughput_why(figures: dict) -> str:
    rps, pipeline = figures["rps"], figures["pipeline"]
    parts = []
    if figures["vs_default"] >= 2:
        parts.append(
            "Met against TorchServe's defaults: one worker per core, each running torch with a thread per "
            "core, "
            "oversubscribe the two cores as soon as both workers are busy, and throughput collapses at "
            "concurrency 4 and 16."
        )
    if 2 * rps[TS_TUNED] > pipeline:
        parts.append(
            f"Against the tuned TorchServe, 2x ({2 * rps[TS_TUNED]:.1f} req/s) lies above the fp32 "
            "in-process "
            f"ceiling ({pipeline:.1f} img/s): no fp32 server reaches it on these cores, the model is the "
            "wall. "
            "A cheaper model closes it: the INT8 row."
        )
    else:
        parts.append(
            f"Against the tuned TorchServe, 2x ({2 * rps[TS_TUNED]:.1f} req/s) is within the fp32 ceiling "
            f"({pipeline:.1f} img/s); Kennel serves {figures['vs_ceiling']:.2f} of that ceiling."
        )
    return " ".join(parts)


def int8_where_the_time_goes(serving: dict, served: float) -> str:
    model, whole = best_ceiling(serving, "int8", "model"), best_ceiling(serving, "int8", "pipeline")
    return (
        f"Where the time goes: the INT8 model alone runs {model:.1f} img/s, decode + preprocessing + model "
        f"{whole:.1f} img/s in one thread of control, so decoding and preprocessing now cost "
        f"{1 - whole / model:.0%} of the pipeline. Kennel serves {served:.1f} req/s"
        + (
            ", above that sequential figure: it decodes on a thread pool while ONNX Runtime runs a batch."
            if served > whole
            else "."
        )
    )


def goals(serving: dict, figures: dict, memory_ab: dict | None = None) -> list[Goal]:
    """Every goal this run measured, in the order docs/benchmarks.md lists them; `figures` is `ratios`'."""
    p99, first = figures["p99"], figures["first"]
    cold_why = (
        f"Kennel fp32 answers its first prediction {first[KENNEL_FP32]:.1f} s after `docker run` (container "
        "start, Python imports, the ONNX Runtime session of the 100 MB fp32 model, a warm-up call); "
        "TorchServe "
        f"took {first[TS_DEFAULT]:.1f} s here with torch already in the page cache."
    )
    if KENNEL_INT8 in first:
        cold_why += (
            f" The same image with the INT8 model answers after {first[KENNEL_INT8]:.1f} s "
            f"({first[TS_DEFAULT] / first[KENNEL_INT8]:.1f}x sooner than TorchServe)."
        )
    rows = [
        (
            "Kennel at least 2x TorchServe's throughput at concurrency 16, with a lower p99",
            f"{figures['vs_default']:.2f}x default, {figures['vs_tuned']:.2f}x tuned",
            figures["vs_tuned"] >= 2 and figures["vs_default"] >= 2 and p99[KENNEL_FP32] < p99[TS_TUNED],
            throughput_why(figures),
        ),
        (
            "Kennel at least 0.85 of the in-process ceiling at concurrency 16",
            f"{figures['vs_ceiling']:.2f}",
            figures["vs_ceiling"] >= 0.85,
            ""
            if figures["vs_ceiling"] >= 0.85
            else "The server, wrk and the kernel share the two cores with the model: HTTP and JSON work per "
            "request is what is left, and batching cannot add cores.",
        ),
        (
            "Kennel's first prediction at least 5x sooner after start than TorchServe's",
            f"{figures['cold']:.1f}x",
            figures["cold"] >= 5,
            cold_why,
        ),
        (
            "Kennel's serving image at least 10x smaller than AWS's PyTorch CPU inference image (4.9 GB)",
            f"{figures['size']:.1f}x",
            figures["size"] >= 10,
            "",
        ),
    ]
    if "int8_vs_tuned" in figures:
        rows.append(
            (
                "Kennel INT8 at least 3x TorchServe's best-tuned throughput at concurrency 16, lower p99",
                f"{figures['int8_vs_tuned']:.2f}x",
                figures["int8_vs_tuned"] >= 3 and p99[KENNEL_INT8] < p99[TS_TUNED],
                int8_where_the_time_goes(serving, figures["rps"][KENNEL_INT8]),
            )
        )
    return [Goal(*row) for row in rows + peer_goals(serving) + payload_goals(serving, memory_ab)]


def _memory_mb(serving: dict, name: str) -> float:
    return median([run["memory_bytes"] / 1e6 for run in serving["servers"][name]["runs"]])


def spread_note(serving: dict, kennel: str, peers: list[str], kennel_rps: float) -> str:
    """The peers whose best repetition at concurrency 16 served more than Kennel's median, with their range:
    the goal is judged on medians, and a median can hide a peer's better runs."""
    notes = []
    for name in peers:
        runs = point(serving, name, 16, "rps")
        if max(runs) > kennel_rps:
            notes.append(
                f"{name}'s repetitions ranged from {min(runs):.1f} to {max(runs):.1f} req/s, its best above "
                f"{kennel}'s median."
            )
    return (" " if notes else "") + " ".join(notes)


def peer_goals(serving: dict) -> list[tuple[str, str, bool, str]]:
    """Kennel against BentoML and LitServe on the same files, as far as this run measured them."""
    rows = []
    servers = serving["servers"]
    for precision, peers in PEERS.items():
        kennel, peers = KENNEL[precision], [name for name in peers if name in servers]
        if kennel not in servers or not peers:
            continue
        label = precision.upper() if precision == "int8" else precision
        rps = {name: median(point(serving, name, 16, "rps")) for name in [kennel, *peers]}
        p99 = {name: median(point(serving, name, 16, "p99")) for name in [kennel, *peers]}
        memory = {name: _memory_mb(serving, name) for name in [kennel, *peers]}
        best, tail = max(peers, key=rps.get), min(peers, key=p99.get)
        ceiling = best_ceiling(serving, precision, "pipeline")
        short = [
            name
            for name, ok in (
                (f"throughput below {best}'s", rps[kennel] >= rps[best]),
                (
                    f"throughput below {PEER_CEILING_GOAL} of the ceiling",
                    rps[kennel] >= PEER_CEILING_GOAL * ceiling,
                ),
                (f"p99 above {tail}'s", p99[kennel] <= p99[tail]),
                ("memory not the least", all(memory[kennel] < memory[name] for name in peers)),
            )
            if not ok
        ]
        rows.append(
            (
                f"Kennel {label} at concurrency 16: throughput at least the best tuned peer's and "
                f"{PEER_CEILING_GOAL} of the in-process ceiling, p99 at most the best peer's, least memory",
                f"{rps[kennel]:.1f} req/s against {best} {rps[best]:.1f} and {rps[kennel] / ceiling:.2f} of "
                f"{ceiling:.1f}; p99 {p99[kennel]:.0f} ms against {tail} {p99[tail]:.0f}; "
                f"{memory[kennel]:.0f} MB against {min(memory[name] for name in peers):.0f}",
                not short,
                ("Short on: " + "; ".join(short) + ". " if short else "")
                + FP32_WHY * (precision == "fp32")
                + INT8_WHY * (precision == "int8" and rps[kennel] < rps[best])
                + spread_note(serving, kennel, peers, rps[kennel]),
            )
        )
    if KENNEL_INT8 in servers and any(name in servers for name in PEERS["int8"]):
        peers = [name for name in PEERS["int8"] if name in servers]
        lone = median(point(serving, KENNEL_INT8, 1, "rps"))
        points = [run["points"]["1"] for run in serving["servers"][KENNEL_INT8]["runs"]]
        if all("sequential_bound_rps" in p for p in points):
            # Paired: each repetition's bound was measured just before and after its concurrency-1 point.
            share = median([p["rps"] / p["sequential_bound_rps"] for p in points])
            bound = median([p["sequential_bound_rps"] for p in points])
        else:
            bound = median([run["int8 pipeline b1"] for run in serving["ceilings"]])
            share = lone / bound
        p99 = {name: median(point(serving, name, 1, "p99")) for name in [KENNEL_INT8, *peers]}
        tail = min(peers, key=p99.get)
        ratio_ok, tail_ok = share >= LONE_REQUEST_GOAL, p99[KENNEL_INT8] <= p99[tail]
        rows.append(
            (
                f"Kennel INT8 at concurrency 1 at least {LONE_REQUEST_GOAL} of the sequential bound "
                "(decode + preprocessing + model at batch 1, one process), p99 at most the best peer's",
                f"{share:.2f} ({lone:.1f} req/s against {bound:.1f}); p99 {p99[KENNEL_INT8]:.0f} ms "
                f"against {tail} {p99[tail]:.0f}",
                ratio_ok and tail_ok,
                LONE_WHY,
            )
        )
    return rows


def payload_goals(serving: dict, memory_ab: dict | None = None) -> list[tuple[str, str, bool, str]]:
    """The rows of the payload, memory and load-test goals, as far as this run measured them."""
    rows = []
    fp32_memory = median([run["memory_bytes"] / 1e6 for run in serving["servers"][KENNEL_FP32]["runs"]])
    fp32_rps = median(point(serving, KENNEL_FP32, 16, "rps"))
    ceilings = serving["ceilings"]
    pattern = [key for key in ceilings[0] if key.startswith("fp32+pattern model ")]
    cost = ""
    if pattern:
        batch = pattern[0].split()[-1]
        # Paired per repetition (measured seconds apart), so that the machine's load cancels out.
        paired = [run[f"fp32 model {batch}"] / run[pattern[0]] for run in ceilings]
        cost = (
            f" In one process, the fp32 model at batch {batch[1:]} without the memory pattern runs at "
            f"{median(paired) - 1:+.1%} of its speed with it (median of the paired repetitions: "
            + ", ".join(f"{ratio - 1:+.1%}" for ratio in paired)
            + ")."
        )
    ab = memory_ab
    if ab:
        ratio = ab["after"]["rps"] / ab["before"]["rps"]
        figure = (
            f"{fp32_memory:.0f} MB here; paired with the build before: {ab['after']['memory_mb']:.0f} MB "
            f"against {ab['before']['memory_mb']:.0f} MB, {ab['after']['rps']:.1f} req/s against "
            f"{ab['before']['rps']:.1f} ({ratio - 1:+.1%})"
        )
        met = fp32_memory <= FP32_MEMORY_GOAL_MB and ab["after"]["memory_mb"] <= FP32_MEMORY_GOAL_MB
        met = met and ratio >= 0.97
        source = (
            f"`bench/memory_ab.py`: {ab['images']['before']} (the serving image before these changes) and "
            f"{ab['images']['after']}, fp32, concurrency 16, {len(ab['runs']) // 2} paired rounds of "
            f"{ab['seconds']:g} s, alternating; medians."
        )
    else:
        ratio = fp32_rps / FP32_C16_BEFORE_RPS
        figure = (
            f"{fp32_memory:.0f} MB; {fp32_rps:.1f} req/s against {FP32_C16_BEFORE_RPS:.1f} before "
            f"({ratio - 1:+.1%})"
        )
        met = fp32_memory <= FP32_MEMORY_GOAL_MB and ratio >= 0.97
        source = "The before figure is from an earlier run on the same machine."
    rows.append(
        (
            f"Kennel fp32 memory at concurrency 16 at most {FP32_MEMORY_GOAL_MB} MB, throughput "
            "within 3% of before",
            figure,
            met,
            "ONNX Runtime's memory pattern is off (it kept an activation block per batch shape) and the "
            f"heap freed after loading the model goes back to the system (malloc_trim). {source}{cost}",
        )
    )
    if KENNEL_INT8 in serving["servers"] and payload_point(serving, KENNEL_INT8, "12 MP", "rps"):
        large = median(payload_point(serving, KENNEL_INT8, "12 MP", "rps"))
        small = median(point(serving, KENNEL_INT8, 16, "rps"))
        p99 = median(payload_point(serving, KENNEL_INT8, "12 MP", "p99"))
        size = serving["payload_bytes"]["12 MP"] / 1e6
        rows += [
            (
                f"Kennel INT8 12 MP throughput at least {LARGE_RATIO_GOAL} of its 500x375 "
                "throughput (concurrency 16)",
                f"{large / small:.2f} ({large:.1f} against {small:.1f} req/s)",
                large / small >= LARGE_RATIO_GOAL,
                f"Was 0.18 before reduced-scale decoding. A 4032x3024 JPEG of {size:.1f} MB decodes at 1/4 "
                "scale (1008x756), about 30 ms of one core against 140 ms in full, but its entropy-coded "
                "data is read in full at every scale, and the body is 25x larger: per request that is more "
                "CPU than the INT8 model itself on these two cores.",
            ),
            (
                f"p99 at concurrency 16 for 12 MP at most {LARGE_P99_GOAL_MS} ms (Kennel INT8)",
                f"{p99:.0f} ms",
                p99 <= LARGE_P99_GOAL_MS,
                f"With 16 requests always in flight, each waits about 16 / {large:.1f} req/s = "
                f"{16 / large:.2f} s (Little's law): the p99 follows the throughput above.",
            ),
        ]
    if "loadtest" in serving:
        test = serving["loadtest"]
        gap = test["rps"] / test["closed_c16_rps"] - 1 if test["closed_c16_rps"] else float("nan")
        rows.append(
            (
                "`deploy loadtest` with default flags within 20% of wrk's concurrency-16 "
                "throughput on the same container (Kennel INT8)",
                f"{test['rps']:.1f} against {test['closed_c16_rps']:.1f} req/s ({gap:+.0%}), in "
                f"{test['seconds']:.0f} s" + (", a LOWER BOUND" if test["lower_bound"] else ""),
                abs(gap) <= LOADTEST_GOAL and not test["lower_bound"],
                f"The loadtest's rate is the highest open-loop rate with p99 within "
                f"{test['command'].split('--p99-ms ')[-1]} ms; wrk's is closed-loop at concurrency 16 "
                f"(p99 {test['closed_c16_p99']:.0f} ms). Its closed-loop probe measured "
                f"{test['saturation_rps']:.1f} req/s."
                + (
                    f" The load test's own Python client used {test['client_cpu_s'] / test['seconds']:.2f} "
                    "of the two cores on average over its run, wrk "
                    f"{test['closed_c16_client_cpu_s'] / test['closed_c16_seconds']:.2f} during its point."
                    if "client_cpu_s" in test
                    else ""
                ),
            )
        )
    return rows


def rss_growth(phase: dict, start: int) -> dict[str, float]:
    """Each soaked container's RSS growth from window `start` to the phase's last."""
    first, last = phase["windows"][start], phase["windows"][-1]
    return {
        c: last["processes"][c]["rss_bytes"] / first["processes"][c]["rss_bytes"] - 1 for c in phase["before"]
    }


def soak_goals(phase: dict, growth: dict[str, float]) -> tuple[bool, bool]:
    """The soak's two goals for one phase: no 5xx, and every container's RSS growth under the goal."""
    return phase["server_errors"] == 0, all(v < SOAK_RSS_GROWTH_GOAL for v in growth.values())
