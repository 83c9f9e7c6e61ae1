"""Where the CPU milliseconds of one pay-by-palm request go, measured in-process.

:func:`cpu_split` enrolls a few synthetic customers through
:class:`~palmpay.payments.service.PaymentService` and :class:`~palmpay.api.palms.PalmDirectory`
(SQLite), then runs payments the way ``POST /v1/payments`` does — decode the 4 JPEG frames
(:func:`palmpay.api.images.decode_image`), ``PalmDirectory.probe_live`` (ROI, quality,
embedding, liveness with the default settings), ``PalmDirectory.match`` over the gallery and
``PaymentService.authorize`` — inside :func:`palmpay.cputime.measure`, with one onnxruntime,
OpenCV and FAISS thread, so the calling thread's CPU clock sees all of it. The stages are the
ones the product itself marks (:data:`palmpay.cputime.STAGES`) plus ``database`` (the
authorisation's transactions); ``other`` is the rest (Python glue, request objects).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from palmpay.bench.results import CpuSplit

__all__ = ["cpu_split"]

log = logging.getLogger(__name__)


def cpu_split(settings: Any, customers: int, requests: int) -> CpuSplit:
    """Mean CPU ms per stage of ``requests`` in-process payments (module docstring)."""
    from palmpay.api.images import decode_image
    from palmpay.api.palms import PalmDirectory
    from palmpay.bench.durable import card
    from palmpay.bench.harness import set_threads
    from palmpay.bench.http import hand_frames, presentation
    from palmpay.payments.service import build_service
    from palmpay.recognizer import Recognizer

    try:
        from palmpay import cputime
    except ImportError:  # an older tree: the whole request only
        cputime = None  # type: ignore[assignment]
    set_threads(1)
    service = build_service(settings.model_copy(update={"sim_card_limit": 0}))
    directory = PalmDirectory(Recognizer(settings), settings,
                              transform=service.template_transform)
    ids = []
    for i in range(customers):
        photos = [decode_image(p, "images", f"{k}.jpg", settings)
                  for k, p in enumerate(hand_frames(500 + i, 4, i))]
        templates = directory.enroll(photos)
        view = service.create_customer(f"Customer {i}", card(20_000 + i), templates, True)
        directory.add(view.id, templates)
        ids.append(view.id)
    payments = [presentation(500 + i % customers, 4, 1000 + i) for i in range(requests)]
    liveness = settings.liveness != "off"

    def pay(frames: list[bytes]) -> str | None:
        decoded = [decode_image(f, "frames", f"{k}.jpg", settings) for k, f in enumerate(frames)]
        templates, _ = directory.probe_live(decoded, liveness)
        who, _score = directory.match(templates)
        if who is not None:
            if cputime is not None:
                with cputime.stage("database"):
                    service.authorize(who, 100, "eur")
            else:
                service.authorize(who, 100, "eur")
        return who

    pay(payments[0])  # warm-up
    sums: dict[str, float] = {}
    total, matched = 0.0, 0
    for frames in payments:
        if cputime is None:
            t0 = time.thread_time()
            matched += pay(frames) is not None
            total += 1000 * (time.thread_time() - t0)
            continue
        with cputime.measure() as meter:
            matched += pay(frames) is not None
        for name, ms in meter.split.as_dict().items():
            if name != "total":
                sums[name] = sums.get(name, 0.0) + ms
        total += meter.split.total_ms
    if matched < requests:
        log.warning("%d of %d in-process payments were not recognised", requests - matched,
                    requests)
    service.db.dispose()
    stages = {k: v / requests for k, v in sums.items()}
    source = ("palmpay.cputime stages" if cputime is not None
              else "thread CPU clock (no per-stage split in this tree)")
    return CpuSplit(frames=4, requests=requests, stages=stages, total_ms=total / requests,
                    source=source)
