"""Unit tests of palmpay.synth: determinism, shapes, mirroring, writers (no hand models needed)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from palmpay import synth
from palmpay.synth import HandIdentity, Variation

SIZE = (320, 240)
# Small palms render from the cheap low-resolution canvas, which keeps this module fast.
BASE = Variation(palm_width_px=70.0, center=(0.5, 0.68), noise_std=3.0, blur_sigma=0.5)


@pytest.fixture(scope="module")
def ident0() -> HandIdentity:
    return HandIdentity.from_seed(0)


def test_identity_is_deterministic_and_seed_specific() -> None:
    assert HandIdentity.from_seed(7) == HandIdentity.from_seed(7)
    assert HandIdentity.from_seed(7) != HandIdentity.from_seed(8)
    with pytest.raises(dataclasses_frozen_error()):
        HandIdentity.from_seed(7).seed = 3  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_render_shape_dtype_and_determinism(ident0: HandIdentity) -> None:
    a = synth.render_hand(ident0, BASE, SIZE)
    b = synth.render_hand(ident0, BASE, SIZE)
    assert a.shape == (SIZE[1], SIZE[0], 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    # A different noise seed changes the frame, but only a little.
    c = synth.render_hand(ident0, replace(BASE, noise_seed=1), SIZE)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - c.astype(int)).mean() < 6


def test_random_variation_is_deterministic(ident0: HandIdentity) -> None:
    v1 = Variation.random(5, size=SIZE)
    assert v1 == Variation.random(5, size=SIZE)
    assert v1 != Variation.random(6, size=SIZE)
    lo, hi = synth.TEST_RANGES.palm_width_px
    assert lo <= v1.palm_width_px <= hi
    assert v1.hand == "right" and Variation.random(5, size=SIZE, hand="left").hand == "left"


def test_hand_is_skin_on_background(ident0: HandIdentity) -> None:
    frame, mask = synth.render_hand_and_mask(ident0, replace(BASE, noise_std=0.0), SIZE)
    assert mask.shape == SIZE[::-1] and mask.dtype == np.float32
    inside = mask > 0.99
    # The hand covers a plausible share of the frame and touches the bottom edge (forearm).
    assert 0.04 < inside.mean() < 0.5
    assert inside[-1].any()
    # Skin: red > green > blue on average.
    b, g, r = (frame[inside][:, k].mean() for k in range(3))
    assert r > g > b


def test_no_hand_frame(ident0: HandIdentity) -> None:
    empty = synth.render_no_hand(replace(BASE, background="textured"), SIZE)
    assert empty.shape == (SIZE[1], SIZE[0], 3) and empty.dtype == np.uint8
    frame, mask = synth.render_hand_and_mask(ident0, replace(BASE, background="textured"), SIZE)
    # Same background where there is no hand.
    outside = cv2.dilate((mask > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    assert np.array_equal(frame[outside], empty[outside])
    assert np.array_equal(synth.render_no_hand(4, SIZE), synth.render_no_hand(4, SIZE))


def test_left_hand_is_the_mirror_image(ident0: HandIdentity) -> None:
    right = replace(BASE, rotation_deg=12.0, center=(0.42, 0.68), noise_std=0.0)
    left = replace(
        right, hand="left", rotation_deg=-12.0, center=(1.0 - 0.42 - 1.0 / SIZE[0], 0.68)
    )
    _, m_r = synth.render_hand_and_mask(ident0, right, SIZE)
    _, m_l = synth.render_hand_and_mask(ident0, left, SIZE)
    # Silhouettes: the left one is the right one flipped left-right (up to interpolation).
    assert np.abs(m_l - m_r[:, ::-1]).mean() < 0.01
    # The thumb side: for a right hand (palm to camera) the thumb is on the image right, so the
    # hand's mass right of the palm centre is larger; for a left hand, left of it.
    cx = int(0.42 * SIZE[0])
    assert m_r[:, cx:].sum() > m_r[:, :cx].sum()
    cxl = SIZE[0] - 1 - cx
    assert m_l[:, :cxl].sum() > m_l[:, cxl:].sum()


def _palm_crop(identity: HandIdentity, hand: str) -> np.ndarray:
    var = Variation(palm_width_px=80.0, center=(0.5, 0.6), hand=hand)
    frame = synth.render_hand(identity, var, SIZE)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
    c = grey[144 - 24 : 144 + 24, 160 - 24 : 160 + 24]
    if hand == "left":
        c = c[:, ::-1]
    hp = c - cv2.GaussianBlur(c, (0, 0), 3.0)
    return (hp - hp.mean()) / (hp.std() + 1e-6)


def test_palm_patterns_differ_between_palms(ident0: HandIdentity) -> None:
    a = _palm_crop(ident0, "right")
    same = _palm_crop(ident0, "right")
    b = _palm_crop(HandIdentity.from_seed(1), "right")
    left = _palm_crop(ident0, "left")
    assert float((a * same).mean()) > 0.99
    # Different identities, and the left palm of the same person, are different palm prints.
    assert abs(float((a * b).mean())) < 0.5
    assert abs(float((a * left).mean())) < 0.5


def test_palm_id() -> None:
    assert synth.palm_id(HandIdentity.from_seed(12), "left") == "00012-left"
    assert synth.palm_id(3) == "00003-right"
    with pytest.raises(ValueError, match="hand"):
        synth.palm_id(3, "middle")


def test_variation_validation() -> None:
    with pytest.raises(ValueError, match="hand"):
        Variation(hand="both")
    with pytest.raises(ValueError, match="background"):
        Variation(background="green")
    with pytest.raises(ValueError, match="palm_width_px"):
        Variation(palm_width_px=0)


def test_presentation_and_demo_clip(ident0: HandIdentity) -> None:
    base = replace(BASE, noise_std=2.0)
    frames = synth.presentation_frames(ident0, 8, seed=1, size=SIZE, base=base)
    assert len(frames) == 8 and all(f.shape == (SIZE[1], SIZE[0], 3) for f in frames)
    again = synth.presentation_frames(ident0, 8, seed=1, size=SIZE, base=base)
    assert all(np.array_equal(x, y) for x, y in zip(frames, again, strict=True))
    # Entering: the first frame shows less hand than a held frame.
    empty = synth.render_no_hand(base, SIZE).astype(int)
    diff = [np.abs(f.astype(int) - empty).mean() for f in frames]
    assert diff[0] < diff[4]


def test_demo_clip_layout(monkeypatch: pytest.MonkeyPatch, ident0: HandIdentity) -> None:
    calls: list[int] = []

    def fake_presentation(who, n, seed, size, base=None, **kw):  # noqa: ANN001, ANN003
        calls.append(who.seed)
        return [np.full((size[1], size[0], 3), 200, np.uint8)] * n

    # demo_clip looks presentation_frames up in its own module, palmpay.synth.clips.
    monkeypatch.setattr(synth.clips, "presentation_frames", fake_presentation)
    clip = synth.demo_clip(
        ident0, HandIdentity.from_seed(99), seed=0, size=SIZE, empty_frames=3, presentation_len=4
    )
    assert len(clip) == 3 + 4 + 3 + 4 + 3
    assert calls == [0, 99]
    assert all((clip[i] == 200).all() for i in range(3, 7))
    assert not (clip[0] == 200).all()


def test_write_y4m(tmp_path) -> None:  # noqa: ANN001
    frames = [synth.render_no_hand(i, SIZE) for i in range(3)]
    path = synth.write_y4m(tmp_path / "clip.y4m", frames, fps=15)
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header == b"YUV4MPEG2 W320 H240 F15:1 Ip A1:1 C420jpeg"
    frame_bytes = SIZE[0] * SIZE[1] * 3 // 2
    assert len(rest) == 3 * (len(b"FRAME\n") + frame_bytes)
    assert rest[:6] == b"FRAME\n"
    y = np.frombuffer(rest[6 : 6 + frame_bytes], np.uint8).reshape(SIZE[1] * 3 // 2, SIZE[0])
    back = cv2.cvtColor(y, cv2.COLOR_YUV2BGR_I420)
    assert np.abs(back.astype(int) - frames[0].astype(int)).mean() < 3
    with pytest.raises(ValueError, match="even"):
        synth.write_y4m(tmp_path / "odd.y4m", [np.zeros((11, 10, 3), np.uint8)])


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_write_video_round_trip(tmp_path, suffix: str) -> None:  # noqa: ANN001
    frames = [synth.render_no_hand(i, SIZE) for i in range(5)]
    path = synth.write_video(tmp_path / f"clip{suffix}", frames, fps=15)
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        assert f.shape == frames[0].shape
        n += 1
    cap.release()
    assert n == 5


def test_write_video_rejects_bad_input(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="empty"):
        synth.write_video(tmp_path / "a.mp4", [])
    with pytest.raises(ValueError, match=r"\.mp4"):
        synth.write_video(tmp_path / "a.gif", [np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="frame 1"):
        synth.write_video(
            tmp_path / "a.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 6, 3), np.uint8)]
        )


def test_write_gallery_layout(tmp_path) -> None:  # noqa: ANN001
    small = replace(synth.TEST_RANGES, palm_width_px=(60.0, 75.0))
    out = synth.write_gallery(
        tmp_path / "g", [0, 1], samples_per_palm=2, seed=0, size=SIZE, ranges=small
    )
    assert sorted(out) == ["00000-right", "00001-right"]
    for pid, paths in out.items():
        assert [p.name for p in paths] == ["0.png", "1.png"]
        for p in paths:
            assert p.parent == tmp_path / "g" / pid
            img = cv2.imread(str(p))
            assert img is not None and img.shape == (SIZE[1], SIZE[0], 3)
    a = cv2.imread(str(out["00000-right"][0]))
    b = cv2.imread(str(out["00000-right"][1]))
    assert not np.array_equal(a, b)  # different variations
    again = synth.write_gallery(
        tmp_path / "g2", [0], samples_per_palm=2, seed=0, size=SIZE, ranges=small, sessions=2
    )
    assert [p.name for p in again["00000-right"]] == ["s1_0.png", "s2_1.png"]
    # Same seed -> same pictures, whatever the file names.
    assert np.array_equal(cv2.imread(str(again["00000-right"][0])), a)


def test_cli_frame(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "f.png"
    assert (
        synth.main(["frame", str(out), "--seed", "1", "--size", "320x240", "--palm-width", "70"])
        == 0
    )
    assert cv2.imread(str(out)).shape == (240, 320, 3)
