from __future__ import annotations

import cv2
import numpy as np
import pytest

from palmpay.capture import SourceError, open_source, read_image


def _texture(seed: int = 0, shape=(240, 320)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = rng.integers(60, 200, size=shape, dtype=np.uint8)
    return cv2.cvtColor(cv2.GaussianBlur(gray, (3, 3), 0), cv2.COLOR_GRAY2BGR)


def test_frame_folder_is_sorted_with_timestamps(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), _texture(i))
    (tmp_path / "notes.txt").write_text("not a frame")
    with open_source(tmp_path, fps=10) as source:
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert np.array_equal(frames[0].image, read_image(tmp_path / "f000.png"))


def test_video_file_frames(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (320, 240))
    for i in range(7):
        writer.write(_texture(i))
    writer.release()
    with open_source(path) as source:
        frames = list(source)
    assert len(frames) == 7
    assert frames[3].timestamp == pytest.approx(3 / 20)
    assert frames[0].image.shape == (240, 320, 3)


def test_single_image_and_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "one.jpg"), _texture())
    assert len(list(open_source(tmp_path / "one.jpg"))) == 1
    with pytest.raises(SourceError, match="no such"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image files"):
        open_source(tmp_path / "empty")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(SourceError, match="corrupt.png: not a readable image"):
        read_image(corrupt)
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"not a video at all")
    with pytest.raises(SourceError):
        list(open_source(bad_video))
