"""Open-set evaluation (``palmpay eval --protocol open-set``): strangers, FPIR and the gallery.

Closed-set numbers (``palmpay eval``'s other protocols) say how well genuine and impostor pairs
separate; a payment terminal also has to refuse the people who never enrolled. This protocol
runs the live decision (:mod:`palmpay.decision`) over a dataset split into enrolled palms and
strangers:

- the palms are sorted and the first ``enrolled_fraction`` of them are **enrolled**: with
  sessions (``s1_*``/``s2_*``), from their session-1 images; without (e.g. coep-dev), from all
  but their last ``frames`` images;
- **genuine presentations**: the enrolled palms' session-2 images in consecutive
  non-overlapping groups of ``frames`` (without sessions: the last ``frames`` images);
- **stranger presentations**: ``frames`` images of one session of one never-enrolled palm,
  drawn with a seeded RNG round-robin over the stranger palms (default: as many as their
  images make groups of ``frames``; without sessions: one per stranger palm, its first
  ``frames`` images).

Every frame is scored against every enrolled sample (:func:`palmpay.match.code_scores`: the
exhaustive search, equal to the live FAISS shortlist + re-rank whenever the shortlist does not
miss the best identity), reduced to each identity's best sample
(:func:`palmpay.openset.frame_identity_scores`) and fused by the mean over the frames, as
:func:`palmpay.decision.fuse` does. A presentation is accepted as its best identity when the
fused score reaches the threshold of :class:`~palmpay.decision.OperatingPoint` for the
gallery's N samples. The same is reported for growing sub-galleries (the first k identities),
each at its own threshold(N_k) and at the model's fixed pair threshold (the old rule), whose
FPIR grows with N: :func:`plot_open_set` draws both against the tail model's prediction.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from palmpay import metrics, openset
from palmpay.config import Settings, get_settings
from palmpay.dataset import DatasetError, Sample, scan
from palmpay.decision import OperatingPoint
from palmpay.embed import PalmEmbedder
from palmpay.evaluate import ROI_MODES, _analyzer
from palmpay.match import code_scores

__all__ = ["GalleryResult", "OpenSetReport", "SUB_GALLERIES", "evaluate_open_set",
           "plot_open_set", "report_table"]

log = logging.getLogger(__name__)

#: Sub-gallery sizes (identities) reported besides the whole gallery.
SUB_GALLERIES = (10, 20, 50, 100)
OPERATING_POINT, FIXED = "operating point", "fixed"


@dataclass(frozen=True)
class GalleryResult:
    """One gallery (the first ``identities`` enrolled palms) at one threshold rule.

    ``rule`` is ``operating point`` (``OperatingPoint.threshold(samples)``) or ``fixed`` (the
    model's pair threshold). ``missed``: genuine presentations not accepted as their own
    identity (rejected or mis-identified); ``misidentified``: accepted as another identity.
    ``fpir_low``–``fpir_high`` is the Clopper–Pearson 95 % interval; ``predicted_fpir`` the
    tail model's FPIR at this threshold and N.
    """

    rule: str
    identities: int
    samples: int
    threshold: float
    strangers: int
    strangers_accepted: int
    fpir_low: float
    fpir_high: float
    predicted_fpir: float
    genuine: int
    missed: int
    misidentified: int

    @property
    def fpir(self) -> float:
        return self.strangers_accepted / self.strangers if self.strangers else 0.0

    @property
    def fnir(self) -> float:
        return self.missed / self.genuine if self.genuine else 0.0

    @property
    def misid_rate(self) -> float:
        return self.misidentified / self.genuine if self.genuine else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fpir": self.fpir, "fnir": self.fnir,
                "misid_rate": self.misid_rate}


@dataclass(frozen=True)
class OpenSetReport:
    """What ``palmpay eval --protocol open-set`` prints. ``overall`` is the whole gallery at
    the operating point; ``galleries`` every sub-gallery (growing, the whole one last) at both
    rules."""

    dataset: str
    roi: str
    palms: int
    images: int
    failed: int
    frames: int
    enrolled_palms: int
    stranger_palms: int
    fixed_threshold: float
    operating_point: OperatingPoint
    overall: GalleryResult
    galleries: tuple[GalleryResult, ...]
    seconds: float

    @property
    def samples(self) -> int:
        return self.overall.samples

    @property
    def threshold(self) -> float:
        return self.overall.threshold

    def rule(self, rule: str) -> list[GalleryResult]:
        """The sub-galleries at one threshold rule, growing."""
        return [g for g in self.galleries if g.rule == rule]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``palmpay eval --protocol open-set --json``."""
        op = self.operating_point
        return {
            "dataset": self.dataset, "roi": self.roi, "palms": self.palms,
            "images": self.images, "failed": self.failed, "frames": self.frames,
            "enrolled_palms": self.enrolled_palms, "stranger_palms": self.stranger_palms,
            "target_fpir": op.target_fpir, "max_fnir": op.max_fnir, "n_safe": op.n_safe,
            "fixed_threshold": self.fixed_threshold, "overall": self.overall.as_dict(),
            "galleries": [g.as_dict() for g in self.galleries], "seconds": self.seconds,
        }


def _codes(samples: list[Sample], roi: str, settings: Settings, embedder: PalmEmbedder,
           workers: int, progress: bool, gates: bool) -> tuple[list[Sample], np.ndarray]:
    """The samples whose ROI is good and their packed codes (the pipeline of ``palmpay eval``)."""
    from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs: types-tqdm is not locked

    pipeline, analyze = _analyzer(roi, settings, embedder, gates)
    with ThreadPoolExecutor(workers) as pool:
        analyses = list(tqdm(pool.map(analyze, (s.path for s in samples)), total=len(samples),
                             desc=f"roi ({roi})", unit="img", disable=not progress))
        kept = [(s, a) for s, a in zip(samples, analyses, strict=True) if a.good]
        if not kept:
            raise DatasetError("no image gave a good palm ROI")
        batches = [kept[i:i + 64] for i in range(0, len(kept), 64)]
        parts = list(pool.map(lambda b: pipeline.templates([a for _, a in b]), batches))
    return [s for s, _ in kept], np.stack([t.code for part in parts for t in part])


def _stranger_groups(rows: dict[str, dict[int | None, list[int]]], count: int | None,
                     frames: int, seed: int) -> list[tuple[int, ...]]:
    """Stranger presentations as probe-row tuples: round-robin over the palms, a random
    session and ``frames`` distinct images of it each time, never the same group twice."""
    palms = [p for p in sorted(rows) if any(len(r) >= frames for r in rows[p].values())]
    if count is None and all(None in rows[p] for p in palms):  # no sessions: first images
        return [tuple(rows[p][None][:frames]) for p in palms if len(rows[p][None]) >= frames]
    if count is None:
        count = sum(len(r) for p in palms for r in rows[p].values()) // frames
    possible = sum(math.comb(len(r), frames) for p in palms for r in rows[p].values())
    if count > possible:
        raise ValueError(f"{count} stranger presentations asked, only {possible} exist")
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < count:
        for palm in palms:
            sessions = [s for s in sorted(rows[palm], key=str) if len(rows[palm][s]) >= frames]
            for _ in range(1000):  # a palm whose groups are all taken is skipped this round
                chosen = rows[palm][sessions[int(rng.integers(len(sessions)))]]
                group = tuple(sorted(int(i) for i in rng.choice(chosen, frames, replace=False)))
                if group not in seen:
                    seen.add(group)
                    break
            if len(seen) == count:
                break
    return sorted(seen)


def _gallery(rule: str, k: int, samples: int, threshold: float, op: OperatingPoint,
             genuine: np.ndarray, owners: np.ndarray, strangers: np.ndarray) -> GalleryResult:
    """Decisions of the first ``k`` identities' gallery at ``threshold``."""
    mine = owners < k
    scores, own = genuine[mine][:, :k], owners[mine]
    best, top = scores.argmax(axis=1), scores.max(axis=1)  # ties: the first sorted identity
    accepted = top >= threshold
    accepted_strangers = int((strangers[:, :k].max(axis=1) >= threshold).sum())
    low, high = metrics.binomial_interval(accepted_strangers, len(strangers))
    return GalleryResult(
        rule=rule, identities=k, samples=samples, threshold=float(threshold),
        strangers=len(strangers), strangers_accepted=accepted_strangers, fpir_low=low,
        fpir_high=high, predicted_fpir=op.fpir(threshold, samples), genuine=int(mine.sum()),
        missed=int((~(accepted & (best == own))).sum()),
        misidentified=int((accepted & (best != own)).sum()))


def evaluate_open_set(
    root: str | Path,
    roi: str = "given",
    enrolled_fraction: float = 0.5,
    frames: int = 3,
    strangers: int | None = None,
    settings: Settings | None = None,
    aliases: dict[str, str] | None = None,
    progress: bool = False,
    *,
    seed: int = 0,
    sizes: Sequence[int] = SUB_GALLERIES,
    workers: int | None = None,
    gates: bool = False,
    embedder: PalmEmbedder | None = None,
) -> OpenSetReport:
    """Run the open-set protocol (module docstring) on ``root`` (``<palm-id>/<sample>``).

    ``roi``, ``aliases``, ``gates`` and ``workers`` are those of
    :func:`palmpay.evaluate.evaluate`; ``seed`` draws the stranger presentations; ``sizes``
    are the sub-gallery sizes (identities) reported besides the whole gallery.
    """
    if roi not in ROI_MODES:
        raise ValueError(f"roi must be one of {ROI_MODES}, not {roi!r}")
    if frames < 1 or not 0 < enrolled_fraction < 1:
        raise ValueError("need frames >= 1 and 0 < enrolled_fraction < 1")
    start = time.perf_counter()
    settings = settings or get_settings()
    embedder = embedder or PalmEmbedder(settings)
    meta = embedder.meta
    if "open_set" not in meta:
        raise ValueError("the model has no open-set calibration (models/calibrate_open_set.py)")
    op = OperatingPoint.from_calibration(meta["open_set"], settings.target_fpir,
                                         settings.max_fnir, settings.n_safe)
    samples = [replace(s, palm=aliases.get(s.palm, s.palm)) for s in scan(root)] \
        if aliases else scan(root)
    palms = sorted({s.palm for s in samples})
    enrolled = set(palms[:int(len(palms) * enrolled_fraction)])
    if not enrolled or len(enrolled) == len(palms):
        raise DatasetError(f"{root}: {len(palms)} palms cannot be split into enrolled and "
                           "strangers")
    sessioned = any(s.session is not None for s in samples)
    used = [s for s in samples if s.palm not in enrolled or not sessioned or s.session in (1, 2)]
    good, codes = _codes(used, roi, settings, embedder, workers or os.cpu_count() or 1,
                         progress, gates)

    by_palm: dict[str, list[int]] = {}
    for i, s in enumerate(good):
        by_palm.setdefault(s.palm, []).append(i)
    gallery_rows: list[int] = []
    genuine_groups: list[tuple[int, ...]] = []  # rows into `good`
    for palm in sorted(enrolled & set(by_palm)):
        rows = by_palm[palm]
        if sessioned:
            enrol = [i for i in rows if good[i].session == 1]
            probe = [i for i in rows if good[i].session == 2]
            groups = [tuple(probe[j:j + frames])
                      for j in range(0, len(probe) - frames + 1, frames)]
        else:
            enrol, groups = rows[:-frames], [tuple(rows[-frames:])] if len(rows) > frames else []
        if enrol:
            gallery_rows += enrol
            genuine_groups += groups
    stranger_rows: dict[str, dict[int | None, list[int]]] = {}
    for palm in sorted(set(by_palm) - enrolled):
        for i in by_palm[palm]:
            stranger_rows.setdefault(palm, {}).setdefault(good[i].session, []).append(i)
    stranger_groups = _stranger_groups(stranger_rows, strangers, frames, seed)
    if not gallery_rows or not genuine_groups or not stranger_groups:
        raise DatasetError(f"{root}: no gallery, genuine or stranger presentation")

    gallery_labels = [good[i].palm for i in gallery_rows]
    identities = sorted(set(gallery_labels))
    probe_rows = sorted({i for g in genuine_groups + stranger_groups for i in g})
    position = {row: j for j, row in enumerate(probe_rows)}
    log.info("open set: %d probe frames against %d samples of %d identities",
             len(probe_rows), len(gallery_rows), len(identities))
    scores = code_scores(codes[probe_rows], codes[gallery_rows], max_shift=embedder.max_shift)
    frame = openset.frame_identity_scores(scores, gallery_labels, identities)

    def fused(groups: list[tuple[int, ...]]) -> np.ndarray:
        return openset.fused_scores(frame, np.asarray([[position[i] for i in g]
                                                       for g in groups], np.int64))

    genuine, stranger = fused(genuine_groups), fused(stranger_groups)
    owners = np.asarray([identities.index(good[g[0]].palm) for g in genuine_groups])
    per_identity = np.cumsum([gallery_labels.count(who) for who in identities])
    fixed = float(meta["threshold"])
    galleries = []
    for k in sorted({*(k for k in sizes if 0 < k < len(identities)), len(identities)}):
        n = int(per_identity[k - 1])
        for rule, threshold in ((OPERATING_POINT, op.threshold(n)), (FIXED, fixed)):
            galleries.append(_gallery(rule, k, n, threshold, op, genuine, owners, stranger))
    return OpenSetReport(
        dataset=Path(root).name, roi=roi, palms=len(palms), images=len(used),
        failed=len(used) - len(good), frames=frames, enrolled_palms=len(identities),
        stranger_palms=len(stranger_rows), fixed_threshold=fixed, operating_point=op,
        overall=galleries[-2], galleries=tuple(galleries),
        seconds=time.perf_counter() - start)


def report_table(report: OpenSetReport) -> list[str]:
    """The report as Markdown lines: a summary, then one row per sub-gallery and rule."""
    op, o = report.operating_point, report.overall
    lines = [
        f"- {report.dataset}, roi {report.roi}: {report.palms} palms ({report.enrolled_palms} "
        f"enrolled, {report.stranger_palms} strangers), {report.images} images, "
        f"{report.failed} without a good ROI; {report.frames} frames per presentation",
        f"- operating point: target FPIR {op.target_fpir:g}, max FNIR {op.max_fnir:g}, "
        f"N = {o.samples} samples → threshold {o.threshold:.4f}; N_safe = {op.n_safe:,} samples",
        f"- **FPIR {o.strangers_accepted} / {o.strangers} = {o.fpir:.2%}** (95 %: "
        f"{o.fpir_low:.2%} – {o.fpir_high:.2%}; model {o.predicted_fpir:.1e}); "
        f"**FNIR {o.missed} / {o.genuine} = {o.fnir:.2%}**; "
        f"**mis-identified {o.misidentified} / {o.genuine} = {o.misid_rate:.2%}**",
        "",
        "| identities | samples N | rule | threshold | strangers accepted | FPIR (95 %) "
        "| model FPIR | FNIR | mis-identified |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in report.galleries:
        lines.append(
            f"| {g.identities} | {g.samples} | {g.rule} | {g.threshold:.4f} | "
            f"{g.strangers_accepted} / {g.strangers} | {g.fpir:.2%} ({g.fpir_low:.2%} – "
            f"{g.fpir_high:.2%}) | {g.predicted_fpir:.1e} | {g.missed} / {g.genuine} "
            f"({g.fnir:.2%}) | {g.misidentified} |")
    return lines


def plot_open_set(report: OpenSetReport, path: str | Path,
                  targets: Sequence[float] = (1e-4, 1e-5)) -> None:
    """FPIR against the gallery size N (samples, log–log): measured at the fixed old threshold
    (95 % intervals; with no error, the upper bound as a ▼) against the tail model's
    prediction, and the operating point's own FPIR (flat at each target) with its N_safe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    op, fixed = report.operating_point, report.fixed_threshold
    points = {target: replace(op, target_fpir=target) for target in targets}
    n_max = max(1e6, 3.0 * max(p.n_safe for p in points.values()))
    n = np.unique(np.logspace(1, math.log10(n_max), 200).astype(np.int64))
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=120)
    ax.plot(n, [op.fpir(fixed, int(v)) for v in n.tolist()], color="C3", lw=1.5,
            label=f"model, fixed threshold {fixed:.4f}")
    for rule, colour, shift in ((FIXED, "C3", 1.0), (OPERATING_POINT, "C0", 1.08)):
        results = report.rule(rule)
        hit = [g for g in results if g.strangers_accepted]
        zero = [g for g in results if not g.strangers_accepted]
        what = f"measured, fixed threshold {fixed:.4f}" if rule == FIXED else \
            f"measured, threshold(N) at target {op.target_fpir:g}"
        if hit:
            ax.errorbar([g.samples * shift for g in hit], [g.fpir for g in hit],
                        yerr=[[g.fpir - g.fpir_low for g in hit],
                              [g.fpir_high - g.fpir for g in hit]],
                        fmt="o", color=colour, capsize=3, label=what)
        if zero:
            ax.plot([g.samples * shift for g in zero], [g.fpir_high for g in zero], "v",
                    color=colour, ms=7, label=f"{what}: 0 accepted (95 % upper bound)")
    for (target, point), style in zip(points.items(), ("--", ":"), strict=False):
        ax.axhline(target, color="C0", ls=style, lw=1.2,
                   label=f"operating point FPIR {target:g} (threshold rises with N)")
        ax.axvline(point.n_safe, color="C2", ls=style, lw=1.2,
                   label=f"N_safe at {target:g}, FNIR ≤ {op.max_fnir:g}: {point.n_safe:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(10, n_max)
    ax.set_ylim(min(min(targets) / 3, 1e-6), 1.5)
    ax.set_xlabel("enrolled samples N")
    ax.set_ylabel("FPIR (strangers charged to someone)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title(f"{report.dataset} (roi {report.roi}): {report.overall.strangers} stranger "
                 f"presentations of {report.frames} frames", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
