"""End to end: synthetic hands → video → `palmpay replay` / `palmpay eval` / `palmpay demo`."""

from __future__ import annotations

import json

import cv2
import pytest

from palmpay import cli, synth
from palmpay.demo import SEEDS_DIR as SEEDS

ENROLLED = (11, 12, 13)
STRANGER = 77
REPLAY_KEYS = {"presentation", "first_frame", "last_frame", "decision", "identity", "score"}
EVAL_KEYS = {"palms", "images", "failed", "genuine_pairs", "impostor_pairs", "eer",
             "frr_at_far_1e-3", "frr_at_far_1e-4", "rank1", "seconds_per_image"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    synth.write_gallery(root / "gallery", ENROLLED, samples_per_palm=3, seed=1)
    clips = {}
    for name, seed in (("enrolled", ENROLLED[1]), ("stranger", STRANGER)):
        frames = [synth.render_no_hand(5, (640, 480)) for _ in range(4)]
        frames += synth.presentation_frames(synth.HandIdentity.from_seed(seed), 24, seed=3)
        clips[name] = synth.write_video(root / f"{name}.mp4", frames, fps=15)
    return root, clips


def _replay(capsys, *args):
    assert cli.main(["replay", *map(str, args), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [json.loads(line) for line in lines]


def test_enrolled_hand_is_recognised(scene, capsys):
    root, clips = scene
    [decision] = _replay(capsys, clips["enrolled"], "--gallery", root / "gallery")
    assert set(decision) == REPLAY_KEYS
    assert decision["decision"] == "match"
    assert decision["identity"] == synth.palm_id(ENROLLED[1])
    assert decision["first_frame"] >= 4 and decision["last_frame"] > decision["first_frame"]


def test_unenrolled_hand_is_unknown(scene, capsys):
    root, clips = scene
    [decision] = _replay(capsys, clips["stranger"], "--gallery", root / "gallery")
    assert decision["decision"] == "unknown"
    assert decision["identity"] is None
    assert 0.0 <= decision["score"] < 0.6


def test_frame_folder_and_human_output(scene, capsys, tmp_path):
    root, clips = scene
    capture = cv2.VideoCapture(str(clips["enrolled"]))
    for i in range(30):
        ok, frame = capture.read()
        if not ok:
            break
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), frame)
    assert cli.main(["replay", str(tmp_path), "--gallery", str(root / "gallery")]) == 0
    out = capsys.readouterr().out
    assert "roi=no_hand" in out and "roi=ok" in out and "sharp" in out
    assert f"MATCH {synth.palm_id(ENROLLED[1])}" in out


def test_replay_bad_inputs_give_clear_errors(scene, capsys, tmp_path):
    root, clips = scene
    assert cli.main(["replay", str(tmp_path / "nope.mp4"), "--gallery", str(root / "gallery")]) == 2
    assert "no such webcam index, video, image or folder" in capsys.readouterr().err
    assert cli.main(["replay", str(clips["enrolled"]), "--gallery", str(tmp_path)]) == 2
    assert "no <palm-id>/<sample> images" in capsys.readouterr().err


def test_eval_json_on_synthetic_sessions(tmp_path, capsys):
    synth.write_gallery(tmp_path / "ds", (21, 22, 23), samples_per_palm=4, seed=2, sessions=2)
    args = ["eval", str(tmp_path / "ds"), "--protocol", "sessions", "--json", "--no-progress",
            "--plot", str(tmp_path / "det.png")]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == EVAL_KEYS
    assert (report["palms"], report["images"], report["failed"]) == (3, 12, 0)
    assert report["genuine_pairs"] == 3 * 2 * 2
    assert report["impostor_pairs"] == 6 * 6 - 12
    assert report["rank1"] == 1.0
    assert (tmp_path / "det.png").stat().st_size > 1000


def test_replay_of_the_seed_video_gives_the_seeded_decisions(capsys):
    meta = json.loads((SEEDS / "customers.json").read_text())
    expected = meta["checkout_video"]["presentations"]
    decisions = _replay(capsys, SEEDS / "checkout.mp4", "--gallery", SEEDS / "gallery")
    assert [d["decision"] for d in decisions] == [e["decision"] for e in expected]
    assert [d["identity"] for d in decisions] == [e["identity"] for e in expected]
