"""``maskgen data`` commands for the cluster application (owned by that application's work)."""

from __future__ import annotations

import argparse


def add_cluster_data_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add this application's data commands to the ``data`` group."""
