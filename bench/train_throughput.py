"""Training throughput: Kennel's train_one_epoch against a bare PyTorch loop, same model, data and batch;
and the trainer with its telemetry and rules on (the defaults) against telemetry off.

    .venv/bin/python -m bench.train_throughput                      # CPU: ResNet-18, 64 px, synthetic data
    .venv/bin/python -m bench.train_throughput --backbone resnet50 --size 224 --images 512   # on a GPU box
    .venv/bin/python -m bench.train_throughput --out bench/results/training.json   # what make bench runs
    .venv/bin/python -m bench.train_throughput --images 800 --rounds 5   # 50 steps an epoch: telemetry's cost

The loops run the same number of images through the same DataLoader, alternating, after a warm-up; the
ratio (trainer / bare, images per second) is the figure docs/benchmarks.md records (bench.report reads
the --out file). "telemetry on" reads the step telemetry every --telemetry-every steps (the default 50,
or 5 to exaggerate it), samples the system every 500 ms and runs the rules, as `train` does; "telemetry
off" is `--telemetry-every 0 --system-sample-ms 0`. Their ratio is the telemetry's cost (target: >= 0.97),
by the wall clock and by the process's CPU time (images per CPU-second, all threads, the sampler's
included), which a machine shared with other work disturbs far less.
"""

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from kennel_train import data, engine
from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext
from kennel_train.insight import Insight
from kennel_train.model import build_model
from kennel_train.synthetic import write_dataset
from kennel_train.telemetry import Telemetry
from torch import nn


def bare_epoch(net: nn.Module, loader, optimizer, device: torch.device) -> None:
    net.train()
    for images, labels, _ in loader:
        images, labels = images.to(device), labels.to(device)
        loss = nn.functional.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=160, help="training images per class x 5 classes")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--amp", default="auto", help="the trainer's --amp: auto (on CUDA), bf16, fp16, off")
    parser.add_argument(
        "--channels-last", default="auto", help="the trainer's --channels-last: auto, on, off"
    )
    parser.add_argument("--telemetry-every", type=int, default=TrainConfig().telemetry_every)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    dist = DistContext.single()
    with tempfile.TemporaryDirectory() as root:
        write_dataset(Path(root), classes=5, per_class=args.images // 5 * 10 // 6, size=args.size)
        config = TrainConfig(
            data=root, backbone=args.backbone, weights="none", image_size=args.size,
            batch_size=args.batch_size, workers=0, epochs=args.rounds + 1, amp=args.amp,
            channels_last=args.channels_last, telemetry_every=args.telemetry_every,
            output_dir=str(Path(root) / "output"),
        )  # fmt: skip
        splits = data.find_splits(config)
        loader = data.make_loaders(config, dist, splits)["train"]
        count = len(loader.dataset)
        net = build_model(args.backbone, 5).to(dist.device)
        if engine.channels_last(config, dist.device):  # as the trainer's main does
            net = net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(net.parameters())
        scheduler = engine.make_schedule(optimizer, config, len(loader))
        fp16 = engine.amp_dtype(config, dist.device) == torch.float16
        scaler = torch.amp.GradScaler(dist.device.type, enabled=fp16)
        criterion = nn.CrossEntropyLoss()
        stop = engine.StopRequested()
        settings = {"trainer": config}
        settings["telemetry_off"] = dataclasses.replace(config, telemetry_every=0, system_sample_ms=0)
        # One Insight per setting for the whole benchmark, as `train` has one per job: its step count goes
        # on across epochs (every N-th step is measured), and its sampler thread runs throughout, so that
        # thread's small cost lands on every loop alike; it is measured on its own below.
        watched = {name: Insight(c, dist, Telemetry(net, optimizer, c, dist)) for name, c in settings.items()}
        for insight in watched.values():
            insight.start(fresh=True)

        def trainer(name: str = "trainer") -> None:
            insight = watched[name]
            insight.telemetry.epoch_started(0)
            engine.train_one_epoch(
                net, loader, criterion, optimizer, scheduler, scaler, settings[name], dist, stop, insight
            )

        def bare() -> None:
            bare_epoch(net, loader, optimizer, dist.device)

        runs = {"trainer": trainer, "telemetry_off": lambda: trainer("telemetry_off"), "bare": bare}
        timings: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for run in runs.values():  # warm-up
            run()
        for _ in range(args.rounds):
            for name, run in runs.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                run()
                if dist.device.type == "cuda":
                    torch.cuda.synchronize()
                timings[name].append(count / (time.perf_counter() - started))
                cpu[name].append(count / (time.process_time() - started_cpu))
        sampler = watched["trainer"].sampler
        started_cpu = time.process_time()
        for _ in range(20):
            sampler.sample()
        sample_ms = (time.process_time() - started_cpu) / 20 * 1000
        for insight in watched.values():
            insight.close()
    best = {name: max(values) for name, values in timings.items()}
    print(f"{args.backbone} {args.size}px batch {args.batch_size} on {dist.device}, {count} images per epoch")
    for name, value in best.items():
        print(f"  {name}: {value:.1f} images/s (best of {args.rounds})")
    print(f"  ratio trainer/bare: {best['trainer'] / best['bare']:.3f}")
    telemetry = best["trainer"] / best["telemetry_off"]
    best_cpu = {name: max(values) for name, values in cpu.items()}
    telemetry_cpu = best_cpu["trainer"] / best_cpu["telemetry_off"]
    print(
        f"  ratio telemetry on/off (every {args.telemetry_every} steps, system every 500 ms): {telemetry:.3f}"
    )
    print(
        f"  the same by CPU time: {telemetry_cpu:.3f} ({best_cpu['trainer']:.1f} against "
        f"{best_cpu['telemetry_off']:.1f} images per CPU-second)"
    )
    share = 100 * sample_ms / config.system_sample_ms
    print(f"  system sampling: {sample_ms:.2f} ms of CPU per sample, {share:.2f}% of a core")
    if args.out:
        figures = {**vars(args), "out": None, "device": str(dist.device), "images_per_epoch": count}
        figures["amp_dtype"] = str(engine.amp_dtype(config, dist.device))
        figures["channels_last_used"] = engine.channels_last(config, dist.device)
        figures |= {"images_per_s": timings, "best": best, "ratio": best["trainer"] / best["bare"]}
        figures |= {"telemetry_ratio": telemetry, "telemetry_ratio_cpu_time": telemetry_cpu}
        figures["system_sample_cpu_ms"] = sample_ms
        figures["images_per_cpu_s"] = cpu
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
