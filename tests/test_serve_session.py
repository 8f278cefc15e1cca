"""``maskgen.serve`` sessions without HTTP: the scene re-composites its input, undo/redo snapshots
share the layers' arrays, the masks readers (COCO, KINS, COCOA) behind the upload."""

from __future__ import annotations

import pytest

from _serve import predictor
from maskgen.errors import MaskgenError
from maskgen.inpainting import TeleaInpainter
from maskgen.serve import session as session_mod
from maskgen.serve.example import EXAMPLE_IMAGE, EXAMPLE_MASKS
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


def test_scene_recomposites_the_input(inputs):
    s = new_session(inputs)
    r = s.rendered()
    # Order-consistent layers: composited in order they give back the input, visible masks too.
    assert (r.image == inputs[0]).all()
    for k, iid in enumerate(inputs[2]):
        assert (r.visible[iid] == inputs[1][k]).all()
    # The candidates' scores are those of the completion the scene's layers came from.
    i = s.index(SHEEP)
    kind, score, mode = s.candidates(i)[0]
    assert kind == "mode" and (mode == s.scene.layers[i].alpha).all()
    assert len(s.candidates(i)) == 1 + s.samples
    # ... and the scene's samples are that completion's samples (made order-consistent).
    comp = s.extras[i].completion
    for n, (_, _, crop) in enumerate(s.candidates(i)[1:]):
        placed = s.placed(i, crop)
        assert (placed <= comp.samples[n] | s.visible_masks[i]).all()
        assert (placed & ~s.visible_masks[i]).sum() > 0.5 * (
            comp.samples[n] & ~s.visible_masks[i]
        ).sum()


def test_history_is_bounded_and_shares_arrays(inputs, monkeypatch):
    monkeypatch.setattr(session_mod, "MAX_HISTORY", 5)
    s = new_session(inputs)
    for _ in range(12):
        s.apply({"op": "move", "instance": ELEPHANT, "dx": 1, "dy": 0})
    assert len(s.history) == 5 and s.cursor == 4
    a, b = s.history[-2], s.history[-1]
    for x, y in zip(a.layers, b.layers, strict=True):  # copies of layers, arrays shared
        assert x is not y and x.alpha is y.alpha and x.colour is y.colour
    i = s.index(ELEPHANT)
    assert (a.layers[i].offset, b.layers[i].offset) == ((11, 0), (12, 0))
    for _ in range(4):
        s.apply({"op": "undo"})
    with pytest.raises(MaskgenError, match="nothing to undo"):
        s.apply({"op": "undo"})
    assert s.scene.layers[i].offset == (8, 0)
    # An edit after an undo does not reach into the snapshots.
    s.apply({"op": "erase", "instance": ELEPHANT})
    assert not any(ly.erased for snap in s.history[:-1] for ly in snap.layers)


def test_sample_and_back_to_mode(inputs):
    s = new_session(inputs)
    i = s.index(SHEEP)
    mode = s.scene.layers[i].alpha
    s.apply({"op": "sample", "instance": SHEEP, "k": 2})
    assert s.extras[i].choice == 2 and s.scene.layers[i].alpha is not mode
    s.apply({"op": "sample", "instance": SHEEP, "k": 0})
    assert s.scene.layers[i].alpha is mode
    s.apply({"op": "undo"})
    assert s.extras[i].choice == 2


def test_failed_op_leaves_the_scene_unchanged(inputs):
    s = new_session(inputs)
    before = [(ly.offset, ly.erased) for ly in s.scene.layers]
    with pytest.raises(MaskgenError):
        s.apply({"op": "sample", "instance": SHEEP, "k": 99})
    with pytest.raises(MaskgenError):
        s.apply({"op": "move", "instance": SHEEP, "dx": 1})
    assert [(ly.offset, ly.erased) for ly in s.scene.layers] == before
    assert s.version == 0 and len(s.history) == 1


def test_new_op_drops_redo(inputs):
    s = new_session(inputs)
    s.apply({"op": "erase", "instance": DOG})
    s.apply({"op": "undo"})
    s.apply({"op": "front", "instance": SHEEP})
    with pytest.raises(MaskgenError, match="nothing to redo"):
        s.apply({"op": "redo"})
    assert DOG in [s.ids[i] for i in s.ranking()]


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
