"""The ``maskgen`` command line: one argparse tree, one module per command group.

Each group module (``maskgen.cli.data``, ``.amodal``, ``.segment``, ``.cluster``, ``.demo``)
exposes ``register(subparsers)`` and sets ``func`` on every leaf parser; ``func(args)`` returns
the exit status. A :class:`~maskgen.errors.MaskgenError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import typing

from maskgen import __version__
from maskgen.errors import MaskgenError

GROUPS = ["data", "amodal", "inpaint", "synth", "segment", "cluster", "demo", "serve"]


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error format: one line ``maskgen: error: ...``, exit 2.

    argparse prints a usage block before its message; a user (and a script reading stderr)
    gets the one line every other maskgen error has, and ``--help`` for the usage.
    """

    def error(self, message: str) -> typing.NoReturn:
        where = self.prog.removeprefix("maskgen").strip()
        prefix = f"{where}: " if where else ""
        print(f"maskgen: error: {prefix}{message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="maskgen",
        description="Learn object masks with generative models (Amodal-VAE, independence prior).",
    )
    parser.add_argument("--version", action="version", version=f"maskgen {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for name in GROUPS:
        importlib.import_module(f"maskgen.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        # A group named without a command.
        print(
            f"maskgen: error: {args.group}: a command is required "
            f"(see 'maskgen {args.group} --help')",
            file=sys.stderr,
        )
        return 2
    try:
        return int(args.func(args) or 0)
    except MaskgenError as e:
        print(f"maskgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
