"""Photo stand-ins for benchmarks and tests: natural-looking procedural pictures at any size, reproducible
from a seed, for the payload sizes phones send (no real photos can be downloaded here).

    .venv/bin/python -m bench.photos 4032 3024 /tmp/photo.jpg      # one 12 MP JPEG, about 3 MB

A picture has what real photos have and flat drawings lack: a 1/f power spectrum (a scene of soft shapes
with detail at every scale), a lit subject with a textured surface and soft edges, lens blur, a vignette,
and sensor noise; JPEG at a phone's quality with 4:2:0 chroma subsampling.
"""

import argparse
import colorsys
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def pink_noise(rng: np.random.Generator, height: int, width: int, channels: int = 3, beta: float = 2.0):
    """Noise with power ~ 1/f^beta (beta 2: natural images), zero mean, unit standard deviation."""
    white = rng.standard_normal((channels, height, width))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    falloff = np.hypot(fy, fx)
    falloff[0, 0] = np.inf
    field = np.fft.irfft2(np.fft.rfft2(white) / falloff ** (beta / 2), s=(height, width))
    field -= field.mean(axis=(1, 2), keepdims=True)
    return (field / field.std(axis=(1, 2), keepdims=True)).transpose(1, 2, 0)


def photo(seed: int, width: int, height: int, coat_hue: float | None = None) -> Image.Image:
    """One `width` x `height` RGB picture; the same seed gives the same picture at every size. The
    subject's colour has hue `coat_hue` (0-1) when given: a visible class for a classifier to learn."""
    rng = np.random.default_rng(seed)
    # The scene at a coarse scale: 1/f colour noise through a random colour mix, then a subject.
    scale = max(1, math.ceil(max(width, height) / 384))
    small_w, small_h = math.ceil(width / scale), math.ceil(height / scale)
    # Mostly light and shade (the first noise channel drives all three colours), a little colour.
    mix = np.vstack([np.full(3, 40.0), rng.normal(0, 9, (2, 3))])
    base = rng.uniform(70, 170) + rng.normal(0, 25, 3)
    slope = np.linspace(-1, 1, small_w)[None, :, None] * rng.normal(0, 20)  # the light comes from a side
    scene = base + slope + pink_noise(rng, small_h, small_w, beta=2.4) @ mix
    image = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
    subject = Image.new("L", (small_w, small_h), 0)
    draw = ImageDraw.Draw(subject)
    cx, cy = rng.uniform(0.3, 0.7) * small_w, rng.uniform(0.3, 0.7) * small_h
    radius = rng.uniform(0.15, 0.35) * min(small_w, small_h)
    for _ in range(int(rng.integers(3, 7))):  # a blob of ellipses: a body, a head, legs
        dx, dy = rng.normal(0, radius * 0.6, 2)
        rx, ry = radius * rng.uniform(0.3, 0.9, 2)
        draw.ellipse((cx + dx - rx, cy + dy - ry, cx + dx + rx, cy + dy + ry), fill=255)
    subject = subject.filter(ImageFilter.GaussianBlur(radius=max(1.0, small_w / 300)))
    coat = rng.uniform(40, 200) + rng.normal(0, 30, 3)
    if coat_hue is not None:
        coat = 255 * np.array(colorsys.hsv_to_rgb(coat_hue, rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.9)))
    fur = coat + pink_noise(rng, small_h, small_w, channels=1, beta=1.4) * 24
    image = Image.composite(Image.fromarray(np.clip(fur, 0, 255).astype(np.uint8)), image, subject)
    # A vignette, smooth enough to apply before the upscale.
    y, x = np.ogrid[-1 : 1 : small_h * 1j, -1 : 1 : small_w * 1j]
    vignette = (1 - 0.25 * (x * x + y * y))[:, :, None]
    image = Image.fromarray((np.asarray(image) * vignette).astype(np.uint8))
    # Full size: an optical upscale (bicubic), then detail finer than the scene's grid and sensor grain.
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    detail_w, detail_h = math.ceil(width / 4), math.ceil(height / 4)
    detail = pink_noise(rng, detail_h, detail_w, channels=1, beta=1.0)[:, :, 0] * 8 + 128
    detail = Image.fromarray(np.clip(detail, 0, 255).astype(np.uint8)).resize((width, height))
    pixels = np.asarray(image, dtype=np.int16)
    pixels += np.asarray(detail, dtype=np.int16)[:, :, None] - 128
    pixels += rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """JPEG as a phone camera writes it: 4:2:0 chroma subsampling, optimised Huffman tables."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling="4:2:0", optimize=True)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("width", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    args.out.write_bytes(jpeg(photo(args.seed, args.width, args.height), args.quality))
    print(f"wrote {args.out}: {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
