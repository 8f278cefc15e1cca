"""Shared set-up of the ``maskgen serve`` tests: the shipped model, an app, a client."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("starlette", reason="maskgen[serve] (starlette) is not installed")
pytest.importorskip("multipart", reason="maskgen[serve] (python-multipart) is not installed")

from maskgen.cli.amodal_complete import SHIPPED_MODEL  # noqa: E402

HOST = "127.0.0.1"
PORT = 8000
BASE = f"http://{HOST}:{PORT}"


@functools.lru_cache(maxsize=1)
def predictor():
    import torch

    from maskgen.amodal.predictor import AmodalPredictor

    torch.set_num_threads(1)
    return AmodalPredictor.from_folder(SHIPPED_MODEL)


def make_app(**config):
    from maskgen.inpainting import TeleaInpainter
    from maskgen.serve.app import ServeConfig, create_app

    config.setdefault("host", HOST)
    config.setdefault("port", PORT)
    return create_app(predictor(), TeleaInpainter(), ServeConfig(**config))


def client(app=None, base_url: str = BASE, **config):
    from starlette.testclient import TestClient

    return TestClient(app or make_app(**config), base_url=base_url)
