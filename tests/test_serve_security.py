"""``maskgen serve`` is safe by default: Host/Origin (DNS rebinding, other sites), upload and
image-size limits, the loopback default bind, one-line CLI errors."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from _cli import check_bad_input
from _serve import BASE, client, make_app
from maskgen.serve.example import EXAMPLE_IMAGE, EXAMPLE_MASKS
from maskgen.serve.security import allowed_host_values


@pytest.fixture(scope="module")
def c():
    with client() as cl:
        yield cl


def refused(r, status, *needles):
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1:9999", "127.0.0.2:8000", ""]
)
def test_foreign_host_is_refused(c, host):
    # DNS rebinding: another site's name resolved to 127.0.0.1 arrives with its own Host.
    refused(c.get("/", headers={"host": host}), 403, "Host")
    refused(c.post("/api/scenes/example", headers={"host": host}), 403, "Host")


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"])
def test_loopback_names_are_accepted(c, host):
    assert c.get("/", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://127.0.0.1:9999", "null", "https://127.0.0.1:8000"]
)
def test_foreign_origin_is_refused(c, origin):
    refused(c.post("/api/scenes/example", headers={"origin": origin}), 403, "Origin")
    refused(c.get("/api/scenes/0123456789abcdef", headers={"origin": origin}), 403, "Origin")


def test_same_origin_is_accepted(c):
    r = c.post("/api/scenes/example", headers={"origin": BASE})
    assert r.status_code == 200, r.text
    sid = r.json()["scene_id"]
    r = c.post(f"/api/scenes/{sid}/ops", json={"op": "erase", "instance": 213},
               headers={"origin": "http://localhost:8000"})  # fmt: skip
    assert r.status_code == 200, r.text


def test_cross_site_fetch_is_refused(c):
    refused(c.post("/api/scenes/example", headers={"sec-fetch-site": "cross-site"}), 403)


def test_wildcard_bind_checks_origin_against_host():
    assert allowed_host_values("0.0.0.0", 8000) is None
    assert allowed_host_values("0.0.0.0", 8000, ["box.lan"]) == {"box.lan:8000"}
    with client(host="0.0.0.0", base_url="http://box.lan:8000") as cl:
        assert cl.get("/").status_code == 200
        refused(cl.post("/api/scenes/example", headers={"origin": "http://evil.example"}), 403)
        assert (
            cl.post("/api/scenes/example", headers={"origin": "http://box.lan:8000"}).status_code
            == 200
        )


def test_oversized_upload_is_413():
    with client(max_upload_mb=0.05) as cl:
        big = b"\0" * 100_000
        r = cl.post("/api/scenes", files={"image": ("x.png", big), "masks": ("m.json", b"{}")})
        refused(r, 413, "larger than the 0.05 MB limit")
        r = cl.post("/api/scenes/0123456789abcdef/ops", content=b"{" * 60_000)
        refused(r, 413)


def test_oversized_body_without_length_is_413():
    """A chunked body (no Content-Length) is counted as it streams."""
    app = make_app(max_upload_mb=0.01)
    chunks = [b"x" * 4096] * 10
    sent: list[dict] = []

    async def receive():
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(msg):
        sent.append(msg)

    scope = {
        "type": "http", "method": "POST", "path": "/api/scenes", "raw_path": b"/api/scenes",
        "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000")], "scheme": "http",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "root_path": "",
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert "limit" in json.loads(sent[1]["body"])["error"]


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG")  # compresses to a few kB
    return buf.getvalue()


def test_huge_image_is_refused_before_decoding(c):
    data = _png(6000, 6000)
    assert len(data) < 2**20
    r = c.post("/api/scenes", files={"image": ("x.png", data), "masks": ("m.json", b"{}")})
    refused(r, 413, "6000x6000", "1024x1024 limit")


def test_bad_masks_json_is_a_json_message(c):
    r = c.post(
        "/api/scenes",
        files={"image": ("scene.png", EXAMPLE_IMAGE.read_bytes()), "masks": ("m.json", b"{,}")},
    )
    msg = refused(r, 400, "masks (m.json)")
    assert "Traceback" not in r.text and "\n" not in msg


def test_masks_file_name_cannot_escape(c, tmp_path):
    r = c.post(
        "/api/scenes",
        files={
            "image": ("../../x.png", EXAMPLE_IMAGE.read_bytes()),
            "masks": ("../../../../tmp/evil.json", EXAMPLE_MASKS.read_bytes()),
        },
    )
    assert r.status_code == 200, r.text


def test_websocket_is_closed(c):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), c.websocket_connect("/") as ws:
        ws.receive_text()


def test_cli_defaults_to_loopback():
    from maskgen.cli.main import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port", "70000"], "--port 70000"),
        (["--max-side", "2"], "--max-side 2"),
        (["--max-upload-mb", "0"], "--max-upload-mb 0"),
        (["--samples", "-1"], "--samples -1"),
        (["--threads", "0"], "--threads 0"),
        (["--model", "/nonexistent/model"], "/nonexistent/model"),
        (["--device", "tpu"], "tpu"),
        (["--port", "x"], "serve: argument --port"),
    ],
)
def test_cli_bad_input(capsys, argv, needle):
    check_bad_input(["serve", *argv], capsys, needle)


def test_cli_starts_uvicorn_on_the_bound_address(monkeypatch, capsys):
    import uvicorn

    from maskgen.cli.main import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--port", "8123", "--threads", "1"]) == 0
    app, kw = calls[0]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123
    assert app.hosts == {"127.0.0.1:8123", "localhost:8123", "[::1]:8123"}
    assert "http://127.0.0.1:8123/" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--allow-host", "box.lan"]) == 0
    assert calls[1][0].hosts == {"box.lan:8000"}
    assert "warning: bound to 0.0.0.0" in capsys.readouterr().err


def test_cli_unknown_inpainter(capsys):
    check_bad_input(["serve", "--inpainter", "/nonexistent/inpainter"], capsys, "nonexistent")
