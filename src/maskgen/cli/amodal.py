"""``maskgen amodal ...`` commands: train, complete, analyze, edit (Amodal-VAE) and evaluate (harness)."""

from __future__ import annotations

import argparse

from maskgen.cli.amodal_analyze import add_analyze_parser
from maskgen.cli.amodal_complete import add_complete_parser
from maskgen.cli.amodal_edit import add_edit_parser
from maskgen.cli.amodal_evaluate import add_evaluate_parser
from maskgen.cli.amodal_order import add_order_parser, add_order_train_parser
from maskgen.cli.amodal_train import add_train_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "amodal", help="Amodal-VAE: train, complete, analyze, edit, evaluate"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)
    add_complete_parser(sub)
    add_edit_parser(sub)
    add_order_parser(sub)
    add_order_train_parser(sub)
    add_analyze_parser(sub)
    add_evaluate_parser(sub)
