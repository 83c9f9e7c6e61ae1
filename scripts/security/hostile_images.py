"""Server memory under hostile image uploads: the figures of ``docs/security/images.md``.

    .venv/bin/python scripts/security/hostile_images.py [--out docs/security/images.md]

Starts the real API (``palmpay serve``, uvicorn) in a subprocess on a temporary SQLite data dir
with ``PALMPAY_DEV_MODE=true`` and default limits, warms it up (one enrollment and one payment,
so that the ONNX sessions have their buffers), records its idle RSS, then sends each upload of
:data:`CASES` (built by ``scripts/security/hostile_files.py``) and records the answer and the
server's peak RSS while it was handled: the kernel's high-water mark (``VmHWM`` of
``/proc/<pid>/status``, reset before each case by writing ``5`` to ``/proc/<pid>/clear_refs``),
cross-checked by polling ``VmRSS`` every 2 ms. The worst case within the limits is then sent 4
times at once. Takes about a minute; Linux only.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import hostile_files as H  # noqa: N812  (run as a script: scripts/security is on sys.path)
import httpx
import numpy as np

from palmpay import synth
from palmpay.config import Settings

__all__ = ["CASES", "main"]

REPO = Path(__file__).resolve().parents[2]
CARD = {"exp_month": "12", "exp_year": "2031", "consent": "true"}
CARDS = ("4242424242424242", "5555555555554444")
TARGET_MB = 100
BEGIN = "<!-- begin: scripts/security/hostile_images.py -->"
END = "<!-- end: scripts/security/hostile_images.py -->"


def _hand_frames(n: int, size: tuple[int, int] = (640, 480), seed: int = 21) -> list[np.ndarray]:
    identity = synth.HandIdentity.from_seed(seed)
    rng = np.random.default_rng(seed)
    return [synth.render_hand(identity, synth.Variation.random(rng, synth.TEST_RANGES, size=size))
            for _ in range(n)]


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    route: str  # "enroll" or "pay" or "analyze"
    files: list[bytes]


def _cases() -> list[Case]:
    settings = Settings()
    hands = _hand_frames(8)
    enroll = [_png(h) for h in hands[:4]]
    other = [_png(h) for h in _hand_frames(4, seed=22)]
    probe = [_jpeg(h) for h in hands[4:]]
    side = int((settings.max_request_pixels // 10) ** 0.5)
    w4k, h4k = 3840, 2160
    hand_4k = _jpeg(cv2.resize(hands[4], (w4k, h4k), interpolation=cv2.INTER_LINEAR), 85)
    return [
        Case("warm_up", "4 PNG 640×480 (synthetic hand), enrollment", "enroll", enroll),
        Case("valid_enroll", "4 PNG 640×480 (synthetic hand), enrollment", "enroll", other),
        Case("valid_pay", "4 JPEG 640×480 frames, payment", "pay", probe),
        Case("rle_bmp_30000", "RLE BMP 30000×30000, 1,080 B", "pay", [H.rle_bmp(30000, 30000)]),
        Case("deflate_tiff_30000", "Deflate TIFF 30000×30000 (100 MB strip of zeros)", "pay",
             [H.deflate_tiff(30000, 30000, strip_mb=100)]),
        Case("bmp_4096_x10", "10 RLE BMPs 4096×4096 in one request", "pay",
             [H.rle_bmp(4096, 4096)] * 10),
        Case("jpeg_stray_16000", "JPEG, stray byte after APP0, SOF says 16000×16000", "pay",
             [H.jpeg_with_stray_byte((16000, 16000))]),
        Case("webp_bomb_16383", "lossless WebP 16383×16383 of one colour, 38 B", "pay",
             [H.WEBP_BOMB]),
        Case("png_ihdr_30000", "PNG, IHDR says 30000×30000", "pay",
             [H.lying_png((30000, 30000), (64, 64))]),
        Case("png_ihdr_small", "PNG, IHDR 64×64 over 3000×3000 of data", "pay",
             [H.lying_png((64, 64), (3000, 3000))]),
        Case("png_4096_x10", "10 PNG 4096×4096 (black) in one request", "pay",
             [H.zero_png(4096, 4096)] * 10),
        Case("png_720p_x10", "10 PNG 1280×720 (black): over max_request_pixels", "pay",
             [H.zero_png(1280, 720)] * 10),
        Case("truncated_jpeg", "JPEG cut in its scan", "pay", [probe[0][: len(probe[0]) // 2]]),
        Case("png_max_x10", f"10 PNG {side}×{side} (black): at max_request_pixels", "pay",
             [H.zero_png(side, side)] * 10),
        Case("png_4k", f"PNG {w4k}×{h4k} (black): at max_image_pixels", "analyze",
             [H.zero_png(w4k, h4k)]),
        Case("jpeg_4k_hand", f"JPEG {w4k}×{h4k} with a hand: at max_image_pixels", "analyze",
             [hand_4k]),
    ]


CASES: Callable[[], list[Case]] = _cases
WORST = "jpeg_4k_hand"


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


class Watch:
    """Peak RSS of ``pid`` while the ``with`` block runs (VmHWM, and VmRSS polled)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.polled = 0
        self.hwm = 0
        self.before = 0

    def __enter__(self) -> Watch:
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
        self.before = _status(self.pid)["VmRSS"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.polled = max(self.polled, _status(self.pid)["VmRSS"])
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm = _status(self.pid)["VmHWM"]

    @property
    def peak(self) -> int:
        return max(self.hwm, self.polled)


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.env = {**os.environ, "PALMPAY_DATA_DIR": str(data_dir), "PALMPAY_DEV_MODE": "true"}
        self.exe = str(Path(sys.executable).parent / "palmpay")
        self.keys = {scope: self._key(scope) for scope in ("kiosk", "terminal")}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([self.exe, "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port)], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)

    def _key(self, scope: str) -> str:
        out = subprocess.run([self.exe, "terminals", "create", "--name", scope, "--scope", scope],
                             env=self.env, capture_output=True, text=True, check=True).stdout
        match = re.search(rf"pp_{scope}_\S+", out)
        assert match, out
        return match.group(0)

    def send(self, case: Case, n: int = 0) -> httpx.Response:
        kind = "image/png" if case.files[0].startswith(b"\x89PNG") else "image/jpeg"
        if case.route == "enroll":
            url, key, field = "/v1/customers", "kiosk", "images"
            data = {"name": f"Shopper {n}", "card_number": CARDS[n % 2], **CARD}
        elif case.route == "analyze":
            url, key, field, data = "/v1/capture/analyze", "kiosk", "image", {}
        else:
            url, key, field = "/v1/payments", "terminal", "frames"
            data = {"amount": "1250", "currency": "eur"}
        files = [(field, (f"f{i}", blob, kind)) for i, blob in enumerate(case.files)]
        return httpx.post(self.base + url, data=data, files=files, timeout=120,
                          headers={"Authorization": f"Bearer {self.keys[key]}"})

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _answer(r: httpx.Response) -> str:
    body = r.json()
    what = body.get("code") or body.get("roi_status") or body.get("status")
    return f"{r.status_code} {what}"


def measure() -> tuple[list[tuple[Case, str, int, int]], tuple[int, list[str], int], int]:
    cases = CASES()
    rows = []
    with tempfile.TemporaryDirectory(prefix="palmpay-hostile-") as tmp:
        server = Server(Path(tmp))
        try:
            by_name = {c.name: c for c in cases}
            server.send(by_name["warm_up"], 0)  # ONNX buffers, first templates
            server.send(by_name["valid_pay"])
            time.sleep(0.5)
            idle = _status(server.proc.pid)["VmRSS"]
            for case in cases[1:]:
                with Watch(server.proc.pid) as watch:
                    r = server.send(case, 1)
                rows.append((case, _answer(r), watch.before, watch.peak))
            worst = by_name[WORST]
            with Watch(server.proc.pid) as watch, ThreadPoolExecutor(4) as pool:
                answers = [_answer(r) for r in pool.map(lambda _: server.send(worst), range(4))]
            burst = (watch.before, answers, watch.peak)
        finally:
            server.close()
    return rows, burst, idle


def report(rows: list[tuple[Case, str, int, int]], burst: tuple[int, list[str], int], idle: int,
           command: str) -> str:
    mb = 1 << 20
    settings = Settings()
    lines = [
        "## Measured: server memory per hostile upload",
        "",
        f"Made by `{command}` on {datetime.now(UTC):%Y-%m-%d} "
        f"({platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs).",
        "The real API (`palmpay serve`, SQLite, dev mode, default limits: "
        f"`max_image_pixels` {settings.max_image_pixels}, `max_request_pixels` "
        f"{settings.max_request_pixels}, `decode_workers` {settings.decode_workers}) in a "
        "subprocess; peak = the server's RSS high-water mark while it handled the request "
        f"(VmHWM, reset before each; VmRSS polled every 2 ms as a check). Idle RSS after "
        f"warm-up: **{idle / mb:.0f} MB**. Target: peak ≤ {TARGET_MB} MB over idle.",
        "",
        "| upload | bytes | answer | RSS before (MB) | peak (MB) | peak − idle (MB) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for case, answer, before, peak in rows:
        size = sum(len(b) for b in case.files)
        lines.append(f"| {case.what} | {size:,} | {answer} | {before / mb:.0f} | "
                     f"{peak / mb:.0f} | {(peak - idle) / mb:+.0f} |")
    before, answers, peak = burst
    lines += [
        "",
        f"4 concurrent copies of `{WORST}` (the costliest upload within the limits): answers "
        f"{', '.join(answers)}; RSS before {before / mb:.0f} MB, peak {peak / mb:.0f} MB, "
        f"**{(peak - idle) / mb:+.0f} MB over idle**.",
        "",
    ]
    worst_single = max((p - idle for _c, _a, _b, p in rows), default=0)
    verdict = "met" if max(worst_single, peak - idle) <= TARGET_MB * mb else "NOT met"
    lines.append(f"Largest single-request peak over idle: {worst_single / mb:+.0f} MB; "
                 f"target ({TARGET_MB} MB) {verdict}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the Markdown there, between the "
                        f"{BEGIN!r} and {END!r} lines if it has them (default: print it)")
    args = parser.parse_args(argv)
    rows, burst, idle = measure()
    command = "python scripts/security/hostile_images.py" + (
        f" --out {shlex.quote(str(args.out))}" if args.out else "")
    text = report(rows, burst, idle, command)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        old = args.out.read_text() if args.out.exists() else ""
        if BEGIN in old and END in old:  # keep the prose around the generated part
            text = old[: old.index(BEGIN) + len(BEGIN)] + "\n" + text + old[old.index(END):]
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
