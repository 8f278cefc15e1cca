"""``maskgen serve``: the browser editor (issue 15) on uvicorn.

Opens on the built-in example scene; a user can upload an image with its instance masks
(COCO/KINS/COCOA JSON) or outline the objects of an image alone. See :mod:`maskgen.serve.app`
for the API and :mod:`maskgen.serve.security` for what is checked on every request.
"""

from __future__ import annotations

import argparse
import sys

from maskgen.errors import MaskgenError


def register(subparsers: argparse._SubParsersAction) -> None:
    from maskgen.cli.amodal_complete import SHIPPED_MODEL

    p = subparsers.add_parser(
        "serve",
        help="browser editor: click an object to complete, move, reorder or erase it",
        description=(
            "Serve the scene editor (one page and a JSON API; everything offline) on "
            "http://HOST:PORT/. Binds 127.0.0.1 unless told otherwise; requests whose Host or "
            "Origin names another address are refused (403), uploads are size-limited (413)."
        ),
    )
    p.add_argument(
        "--model", default=str(SHIPPED_MODEL), help="Amodal-VAE model folder (default: shipped)"
    )
    p.add_argument(
        "--inpainter",
        default="telea",
        help="inpainter: 'telea' (OpenCV, default; fast enough for interactive use on a CPU), "
        "or, where maskgen.inpainting.load_inpainter exists, 'builtin' or a learned "
        "inpainter's folder",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name to accept (repeatable; e.g. the machine's LAN name)",
    )
    p.add_argument("--max-upload-mb", type=float, default=16.0, help="largest upload (default 16)")
    p.add_argument(
        "--max-side", type=int, default=1024, help="largest image side, px (default 1024)"
    )
    p.add_argument("--max-scenes", type=int, default=8, help="scenes kept in memory (default 8)")
    p.add_argument(
        "--samples", type=int, default=6, help="posterior samples per instance (default 6)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run_serve)


def load_inpainter(spec: str, device: str = "cpu"):
    """The inpainter named by ``--inpainter`` (the learned one only where it is installed)."""
    import maskgen.inpainting as inp

    if spec == "telea":
        return inp.TeleaInpainter()
    loader = getattr(inp, "load_inpainter", None)
    if loader is None:
        raise MaskgenError(f"--inpainter {spec}: only 'telea' is available in this installation")
    return loader(spec, device=device)


def check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise MaskgenError(f"--port {args.port}: must be in [1, 65535]")
    if not 0 < args.max_upload_mb <= 1024:
        raise MaskgenError(f"--max-upload-mb {args.max_upload_mb}: must be in (0, 1024]")
    if not 8 <= args.max_side <= 8192:
        raise MaskgenError(f"--max-side {args.max_side}: must be in [8, 8192]")
    if not 1 <= args.max_scenes <= 1000:
        raise MaskgenError(f"--max-scenes {args.max_scenes}: must be in [1, 1000]")
    if not 0 <= args.samples <= 64:
        raise MaskgenError(f"--samples {args.samples}: must be in [0, 64]")
    if args.threads is not None and args.threads < 1:
        raise MaskgenError(f"--threads {args.threads}: must be at least 1")


def build_app(args: argparse.Namespace):
    """The app for parsed arguments (loads the model and the inpainter)."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MaskgenError(
            "serve: Starlette and uvicorn are not installed; pip install 'maskgen[serve]'"
        ) from None
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.cli.amodal_complete import check_model_arg
    from maskgen.engine import check_device
    from maskgen.serve.app import ServeConfig, create_app

    check_model_arg(args.model)
    device = str(check_device(args.device))  # one line for a missing CUDA / an unknown device
    predictor = AmodalPredictor.from_folder(args.model, device=device)
    inpainter = load_inpainter(args.inpainter, device)
    cfg = ServeConfig(
        host=args.host, port=args.port, allow_hosts=list(args.allow_host),
        max_upload_mb=args.max_upload_mb, max_side=args.max_side,
        max_scenes=args.max_scenes, samples=args.samples,
    )  # fmt: skip
    return create_app(predictor, inpainter, cfg)


def run_serve(args: argparse.Namespace) -> int:
    check_args(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    app = build_app(args)
    import uvicorn

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"maskgen editor on http://{host}:{args.port}/  (Ctrl-C stops it)", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: bound to {args.host}: anyone who can reach this address can use the "
            "editor (there is no login)",
            file=sys.stderr,
        )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except OSError as e:  # pragma: no cover - depends on the machine
        raise MaskgenError(f"--host {args.host} --port {args.port}: cannot bind ({e})") from None
    return 0
