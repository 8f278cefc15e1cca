"""``maskgen data ...`` commands: built-in and derived data sets."""

from __future__ import annotations

import argparse

from maskgen.cli.data_cluster import add_cluster_data_parsers
from maskgen.cli.data_segment import add_segment_data_parsers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make built-in data sets (scenes, segmentation, clusters)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_segment_data_parsers(sub)
    add_cluster_data_parsers(sub)
