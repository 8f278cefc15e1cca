"""``maskgen segment ...`` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("segment", help="segment commands")
    parser.add_subparsers(dest="command", metavar="COMMAND")
