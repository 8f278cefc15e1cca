"""``maskgen.serve`` sessions and layers without HTTP: history, sharing, order consistency, and the
masks readers (COCO, KINS, COCOA) behind the upload."""

from __future__ import annotations

import pytest

from _serve import predictor
from maskgen.errors import MaskgenError
from maskgen.inpainting import TeleaInpainter
from maskgen.serve import session as session_mod
from maskgen.serve.example import EXAMPLE_IMAGE, EXAMPLE_MASKS
from maskgen.serve.layers import render
from maskgen.serve.session import Session, SessionStore

DOG, ELEPHANT, SHEEP = 213, 212, 211


def example_inputs():
    from maskgen.serve.app import read_upload_image, read_upload_masks

    image = read_upload_image(EXAMPLE_IMAGE.read_bytes(), 1024)
    masks, ids, labels, depth, cats = read_upload_masks(
        EXAMPLE_MASKS.read_bytes(), "m.json", "scene.png", 256, 256, None
    )
    return image, masks, ids, labels, depth, cats


@pytest.fixture(scope="module")
def inputs():
    return example_inputs()


def new_session(inputs, sid="0" * 16):
    image, masks, ids, labels, depth, cats = inputs
    return Session(sid, image, masks, ids, labels, predictor(), TeleaInpainter(), categories=cats)


def test_layers_recomposite_the_input(inputs):
    s = new_session(inputs)
    r = render(s.state)
    # Order-consistent layers: composited in order they give back the input, visible masks too.
    assert (r.image == inputs[0]).all()
    for k, iid in enumerate(inputs[2]):
        assert (r.visible[iid] == inputs[1][k]).all()


def test_history_is_bounded_and_shares_layers(inputs, monkeypatch):
    monkeypatch.setattr(session_mod, "MAX_HISTORY", 5)
    s = new_session(inputs)
    for _ in range(12):
        s.apply({"op": "move", "instance": ELEPHANT, "dx": 1, "dy": 0})
    assert len(s.history) == 5 and s.cursor == 4
    a, b = s.history[-2], s.history[-1]
    # Only the moved layer is a new object; its arrays are shared, not copied.
    same = [x is y for x, y in zip(a.layers, b.layers, strict=True)]
    assert same.count(False) == 1
    moved = a.layers[same.index(False)]
    assert b.layers[same.index(False)].rgb is moved.rgb and a.plate is b.plate
    for _ in range(4):
        s.apply({"op": "undo"})
    with pytest.raises(MaskgenError, match="nothing to undo"):
        s.apply({"op": "undo"})
    assert s.state.layer(ELEPHANT).dx == 8


def test_new_op_drops_redo(inputs):
    s = new_session(inputs)
    s.apply({"op": "erase", "instance": DOG})
    s.apply({"op": "undo"})
    s.apply({"op": "front", "instance": SHEEP})
    with pytest.raises(MaskgenError, match="nothing to redo"):
        s.apply({"op": "redo"})
    assert DOG in [layer.id for layer in s.state.layers]


def test_store_evicts_least_recently_used(inputs):
    store = SessionStore(max_sessions=2)
    a, b, c = (new_session(inputs, sid * 16) for sid in "abc")
    store.add(a)
    store.add(b)
    store.get(a.id)  # a is now the most recently used
    store.add(c)
    assert a.id in store and c.id in store and b.id not in store and len(store) == 2


def test_cocoa_and_kins_masks_are_read(inputs, tmp_path):
    from maskgen.core.rle import encode_rle
    from maskgen.data.cocoa import write_cocoa
    from maskgen.data.kins import write_kins_old
    from maskgen.data.types import Dataset, ImageRecord, Instance
    from maskgen.serve.app import read_upload_masks

    _, masks, ids, labels, _, cats = inputs
    rec = ImageRecord(1, "scene.png", 256, 256)
    for depth, (m, i, lab) in enumerate(zip(masks, ids, labels, strict=True)):
        rec.instances.append(Instance(i, lab, encode_rle(m), encode_rle(m), depth=depth))
    for write in (write_cocoa, write_kins_old):
        write(Dataset([rec], cats), tmp_path / "m.json")
        got, got_ids, _, _, _ = read_upload_masks(
            (tmp_path / "m.json").read_bytes(), "m.json", "scene.png", 256, 256, None
        )
        want = dict(zip(ids, masks.sum(axis=(1, 2)), strict=True))
        assert sorted(got_ids) == sorted(ids)
        for i, m in zip(got_ids, got, strict=True):  # COCOA stores polygons: nearly equal
            assert abs(int(m.sum()) - int(want[i])) <= 0.1 * want[i]
