"""Synthetic hands must be found by the hand models: palmpay.roi on palmpay.synth frames.

Skipped (with the reason) when :mod:`palmpay.roi` cannot be imported or its ONNX models are not
built (``models/build_hand_models.py``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from palmpay import synth
from palmpay.synth import HandIdentity, Variation

roi = pytest.importorskip("palmpay.roi", reason="palmpay.roi is not importable")


@pytest.fixture(scope="module")
def extractor():  # noqa: ANN201
    try:
        return roi.PalmRoiExtractor()
    except FileNotFoundError as exc:  # models not built
        pytest.skip(f"hand models missing: {exc}")


def test_random_hands_are_found(extractor) -> None:  # noqa: ANN001
    """Across the TEST_RANGES variations (rotation ±20°, palm 120-240 px, tilt, lighting, blur,
    noise, all backgrounds, both hands) nearly every hand gives a palm ROI."""
    rng = np.random.default_rng(2024)
    ranges = replace(synth.TEST_RANGES, left_fraction=0.3)
    n, ok, failures = 12, 0, []
    for i in range(n):
        identity = HandIdentity.from_seed(i % 4)
        var = Variation.random(rng, ranges)
        result = extractor.extract(synth.render_hand(identity, var))
        if result.ok and result.hand.handedness == var.hand:
            ok += 1
            assert result.roi.shape == (128, 128) and result.roi.dtype == np.uint8
        else:
            failures.append((i, str(result.status), result.reason, var))
    assert ok >= n - 1, failures


@pytest.mark.parametrize("hand", ["right", "left"])
def test_handedness_and_palm_width(extractor, hand: str) -> None:  # noqa: ANN001
    var = Variation(palm_width_px=180.0, center=(0.5, 0.68), hand=hand, noise_std=2.0)
    result = extractor.extract(synth.render_hand(HandIdentity.from_seed(1), var))
    assert result.ok, result.reason
    assert result.hand.handedness == hand
    # Index-to-pinky MCP distance is roughly 0.6-0.85 of the rendered palm width.
    assert 0.55 * 180 < result.palm_width < 0.9 * 180


@pytest.mark.parametrize("background", synth.BACKGROUNDS)
def test_no_hand_frames_have_no_hand(extractor, background: str) -> None:  # noqa: ANN001
    for seed in range(2):
        var = replace(Variation.random(seed), background=background)
        result = extractor.extract(synth.render_no_hand(var))
        assert result.status == roi.RoiStatus.NO_HAND, (background, seed, result.reason)


def test_presentation_clip_is_tracked(extractor) -> None:  # noqa: ANN001
    """During the hold phase of a presentation, tracking yields ROIs on every frame."""
    frames = synth.presentation_frames(HandIdentity.from_seed(2), 16, seed=3)
    extractor.reset()
    statuses = [extractor.track(f).status for f in frames]
    extractor.reset()
    hold = statuses[4:13]  # enter = first 4 frames, leave = last 3
    assert all(s == roi.RoiStatus.OK for s in hold), statuses


def test_synthetic_palms_are_distinguishable(extractor) -> None:  # noqa: ANN001
    """Genuine pairs (same palm, different variations) outscore every impostor pair."""
    embed = pytest.importorskip("palmpay.embed", reason="palmpay.embed is not importable")
    match = pytest.importorskip("palmpay.match", reason="palmpay.match is not importable")
    try:
        embedder = embed.PalmEmbedder(load_meta=False)
    except FileNotFoundError as exc:
        pytest.skip(f"embedding model missing: {exc}")
    rng = np.random.default_rng(7)
    labels, rois = [], []
    for seed in (10, 11, 12, 13):
        identity = HandIdentity.from_seed(seed)
        for _ in range(2):
            result = extractor.extract(synth.render_hand(identity, Variation.random(rng)))
            assert result.ok, result.reason
            labels.append(seed)
            rois.append(result.roi)
    _, codes = embedder.embed_many(rois)
    scores = match.code_scores(codes, codes, embedder.max_shift)
    lab = np.array(labels)
    upper = np.triu(np.ones_like(scores, dtype=bool), 1)
    genuine = scores[upper & (lab[:, None] == lab[None, :])]
    impostor = scores[upper & (lab[:, None] != lab[None, :])]
    assert genuine.min() > impostor.max(), (genuine, impostor.max())
    assert impostor.max() < 0.65 and np.median(genuine) > 0.68
