"""palmpay.pipeline: one frame → ROI → quality gates → Template, as every caller runs it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from palmpay import synth
from palmpay.config import Settings
from palmpay.embed import Template
from palmpay.pipeline import Pipeline
from palmpay.quality import assess_quality
from palmpay.roi import RoiStatus, palm_region


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(Settings())


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return synth.render_hand(synth.HandIdentity.from_seed(3),
                             synth.Variation.random(3, size=(640, 480)), size=(640, 480))


def test_good_frame_gives_a_template_from_its_own_roi(pipeline, frame):
    analysis = pipeline.template(frame)
    assert analysis.good and analysis.status == "ok" and analysis.reason == "ok"
    roi = analysis.roi
    assert analysis.quality == assess_quality(frame, palm_region(roi.hand), roi.palm_width,
                                              pipeline.settings)
    assert isinstance(analysis.template, Template)
    expected = pipeline.embedder.embed(roi.roi)
    np.testing.assert_array_equal(analysis.template.code, expected.code)
    assert pipeline.templates([analysis])[0].code.tobytes() == expected.code.tobytes()


def test_failed_gate_is_reported_and_not_embedded(frame):
    strict = Pipeline(Settings(min_sharpness=1e9))
    analysis = strict.template(frame)
    assert analysis.roi.ok and not analysis.good and analysis.template is None
    assert analysis.status == "low_quality" and analysis.reason.startswith("quality: blurred")
    assert strict.templates([analysis]) == []
    ungated = Pipeline(Settings(min_sharpness=1e9), strict.extractor, strict.embedder,
                       gates=False)
    assert ungated.template(frame).good and ungated.analyze(frame).quality is None


def test_no_hand_and_given_roi(pipeline):
    empty = pipeline.template(synth.render_no_hand(1, (640, 480)))
    assert empty.roi.status is RoiStatus.NO_HAND and empty.quality is None
    assert not empty.good and empty.template is None and empty.status == "no_hand"
    roi = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    given = pipeline.given(roi)
    assert given.good and given.quality is None and given.roi.roi.shape == (128, 128)
    expected = cv2.resize(cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY), (128, 128),
                          interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(given.roi.roi, expected)
    assert len(pipeline.templates([given])) == 1


def test_a_presentation_tracks_with_its_own_hand_track(pipeline):
    from palmpay.roi import HandTrack

    clip = synth.presentation_frames(synth.HandIdentity.from_seed(5), 8, seed=5,
                                     enter_fraction=0.0, leave_fraction=0.0)[::2]
    track = HandTrack()
    analyses = [pipeline.analyze(frame, track=track) for frame in clip]
    assert all(a.good for a in analyses)
    assert (track.frames, track.detections) == (4, 1)
    pipeline.reset()  # the pipeline's own track is another one
    assert pipeline.analyze(clip[0], track=True).good and track.frames == 4
