"""python -m images build [NAME ...]: see images/__init__.py."""

import argparse
import sys

from images import DOCKERFILES, NAMES, ROOT, VARIANTS, BuildError, build, local_tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images", description="Build Kennel's images locally.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build the images from containers/")
    cmd.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"{', '.join(NAMES)} (default: {', '.join(DOCKERFILES)}); a variant builds its base first",
    )
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(NAMES)
    if unknown:
        parser.error(f"unknown image {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
    # A variant's base comes first, once, so that its own summary is printed too.
    names = [n for name in args.names or DOCKERFILES for n in (*_bases(name), name)]
    built: dict[str, str] = {}
    for name in dict.fromkeys(names):
        variant = VARIANTS.get(name)
        dockerfile = DOCKERFILES[variant.of if variant else name].relative_to(ROOT)
        on = f" on {built[variant.base]}" if variant else ""
        print(f"images: building {local_tag(name)} from {dockerfile}{on} ...", flush=True)
        try:
            image = build(
                name,
                base=built[variant.base] if variant else None,
                progress=lambda step: print(f"images:   {step[:110]}", flush=True),
            )
            print("images: " + image.summary(), flush=True)
        except BuildError as err:
            print(f"images: {err}", file=sys.stderr)
            return 1
        built[name] = image.tag
    return 0


def _bases(name: str) -> list[str]:
    return [VARIANTS[name].base] if name in VARIANTS else []


sys.exit(main())
