"""``maskgen cluster ...`` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cluster", help="cluster commands")
    parser.add_subparsers(dest="command", metavar="COMMAND")
