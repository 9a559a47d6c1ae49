"""`synthetic-data`: a small, learnable ImageFolder data set of JPEGs for demos and tests.

    synthetic-data /data                                   # 5 classes, train/ valid/ test/
    docker run -v kennel-data:/data kennel-train synthetic-data /data --classes 8 --per-class 40

Each class has its own hue and shape, drawn at a random place and size on a noisy background, so a small
network learns it in a few epochs. The same seed gives the same files.
"""

import argparse
import colorsys
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SPLIT_FRACTIONS = {"train": 0.6, "valid": 0.2, "test": 0.2}
SHAPES = ("ellipse", "rectangle", "triangle", "cross", "stripes")


def class_names(classes: int) -> list[str]:
    """Names in the dog-breed style, so sorted order is index order: 001.class_a, 002.class_b, ..."""
    return [
        f"{index + 1:03d}.{SHAPES[index % len(SHAPES)]}_{index // len(SHAPES) + 1}"
        for index in range(classes)
    ]


def draw_image(label: int, classes: int, size: int, rng: random.Random) -> Image.Image:
    hue = label / classes
    background = tuple(
        int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.3, rng.uniform(0.3, 0.7))
    )
    image = Image.new("RGB", (size, size), background)
    pixels = image.load()
    for _ in range(size * size // 8):
        x, y = rng.randrange(size), rng.randrange(size)
        pixels[x, y] = tuple(rng.randrange(256) for _ in range(3))
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, rng.uniform(0.7, 1.0)))
    extent = rng.uniform(0.45, 0.8) * size
    x0, y0 = rng.uniform(0, size - extent), rng.uniform(0, size - extent)
    box = (x0, y0, x0 + extent, y0 + extent)
    draw = ImageDraw.Draw(image)
    shape = SHAPES[label % len(SHAPES)]
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x0, y0 + extent), (x0 + extent / 2, y0), (x0 + extent, y0 + extent)], fill=colour)
    elif shape == "cross":
        width = extent / 4
        draw.rectangle(
            (x0, y0 + extent / 2 - width / 2, x0 + extent, y0 + extent / 2 + width / 2), fill=colour
        )
        draw.rectangle(
            (x0 + extent / 2 - width / 2, y0, x0 + extent / 2 + width / 2, y0 + extent), fill=colour
        )
    else:
        for offset in range(0, int(extent), max(int(extent / 5), 2) * 2):
            draw.rectangle((x0, y0 + offset, x0 + extent, y0 + offset + extent / 10), fill=colour)
    return image


def write_dataset(
    out_dir: Path, classes: int = 5, per_class: int = 30, size: int = 64, seed: int = 0
) -> dict:
    """Writes OUT_DIR/{train,valid,test}/<class>/<n>.jpg; returns the number of images per split."""
    if classes < 2 or per_class < 3:
        raise ValueError("need at least 2 classes and 3 images per class (one per split)")
    rng = random.Random(seed)
    counts = dict.fromkeys(SPLIT_FRACTIONS, 0)
    names = class_names(classes)
    for label, name in enumerate(names):
        valid = max(1, round(per_class * SPLIT_FRACTIONS["valid"]))
        test = max(1, round(per_class * SPLIT_FRACTIONS["test"]))
        sizes = {"train": per_class - valid - test, "valid": valid, "test": test}
        for split, count in sizes.items():
            folder = out_dir / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image = draw_image(label, classes, size, rng)
                image.save(folder / f"{name}_{index:04d}.jpg", quality=90)
            counts[split] += count
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="synthetic-data",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "out_dir", type=Path, metavar="OUT_DIR", help="folder to write train/ valid/ test/ into"
    )
    parser.add_argument("--classes", type=int, default=5, help="number of classes")
    parser.add_argument("--per-class", type=int, default=30, help="images per class, over all splits")
    parser.add_argument("--size", type=int, default=64, help="image width and height in pixels")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed writes the same images"
    )
    args = parser.parse_args(argv)
    try:
        counts = write_dataset(args.out_dir, args.classes, args.per_class, args.size, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(
        f"synthetic-data: {args.classes} classes in {args.out_dir}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
