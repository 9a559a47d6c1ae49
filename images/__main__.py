"""python -m images build [NAME ...]: see images/__init__.py."""

import argparse
import sys

from images import DOCKERFILES, ROOT, BuildError, build, local_tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images", description="Build Kennel's images locally.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build the images from containers/")
    cmd.add_argument("names", nargs="*", metavar="NAME", help="train, serve and/or proxy (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(DOCKERFILES)
    if unknown:
        parser.error(f"unknown image {', '.join(sorted(unknown))}; choose from {', '.join(DOCKERFILES)}")
    for name in args.names or list(DOCKERFILES):
        dockerfile = DOCKERFILES[name].relative_to(ROOT)
        print(f"images: building {local_tag(name)} from {dockerfile} ...", flush=True)
        try:
            built = build(name, progress=lambda step: print(f"images:   {step[:110]}", flush=True))
            print("images: " + built.summary(), flush=True)
        except BuildError as err:
            print(f"images: {err}", file=sys.stderr)
            return 1
    return 0


sys.exit(main())
