"""``palmpay`` command line: evaluate, replay recorded video, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger(__name__)


def _cmd_eval_open_set(args: argparse.Namespace) -> int:
    from palmpay.evaluate_open_set import evaluate_open_set, plot_open_set, report_table

    report = evaluate_open_set(args.dataset, roi=args.roi, progress=not args.no_progress,
                               workers=args.workers, gates=args.quality_gates)
    if args.plot:
        plot_open_set(report, args.plot)
    print(json.dumps(report.as_dict()) if args.json else "\n".join(report_table(report)))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.protocol == "open-set":
        return _cmd_eval_open_set(args)
    from palmpay.evaluate import evaluate, plot_det

    scores = evaluate(args.dataset, roi=args.roi, protocol=args.protocol,
                      workers=args.workers, progress=not args.no_progress,
                      gates=args.quality_gates)
    report = scores.report
    if args.plot:
        plot_det(scores, args.plot, f"{Path(args.dataset).name} ({args.protocol}, roi {args.roi})")
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    rows = [
        ("palms", f"{report.palms}"),
        ("images", f"{report.images}"),
        ("failed ROI", f"{report.failed}"),
        ("genuine pairs", f"{report.genuine_pairs:,}"),
        ("impostor pairs", f"{report.impostor_pairs:,}"),
        ("EER", f"{report.eer:.4%}"),
        ("FRR @ FAR 1e-3", f"{report.frr_at_far_1e3:.4%}"),
        ("FRR @ FAR 1e-4", f"{report.frr_at_far_1e4:.4%}"),
        ("rank-1", f"{report.rank1:.4%}"),
        ("at threshold", "{:.4f}: FAR {:.2e}, FRR {:.4%} (the live operating point)".format(
            scores.threshold, *scores.at_threshold) if scores.threshold is not None else "-"),
        ("seconds / image", f"{report.seconds_per_image:.4f} (ROI + embedding)"),
        ("matching seconds", f"{scores.match_seconds:.1f} (all pairs)"),
    ]
    for name, value in rows:
        print(f"{name:>17}: {value}")
    return 0


def _presentation_line(p) -> str:
    span = f"frames {p.first_frame}-{p.last_frame}"
    if p.decision == "match":
        return f"presentation {p.presentation} ({span}): MATCH {p.identity} score {p.score:.3f}"
    if p.decision == "unknown":
        return f"presentation {p.presentation} ({span}): UNKNOWN best score {p.score:.3f}"
    return f"presentation {p.presentation} ({span}): NO PALM (no good frame)"


def _cmd_replay(args: argparse.Namespace) -> int:
    from palmpay.capture import open_source
    from palmpay.recognizer import Presentation, Recognizer

    recognizer = Recognizer()
    for report in recognizer.enroll_folder(args.gallery):
        log.info("enrolled %s: %d samples, %d rejected", report.identity, report.used,
                 len(report.rejected))
    if not recognizer.index.identities:
        raise SystemExit(f"palmpay replay: no palm in {args.gallery} could be enrolled")
    with open_source(args.source) as source:
        for item in recognizer.replay(source):
            if isinstance(item, Presentation):
                print(json.dumps(item.as_dict()) if args.json else _presentation_line(item),
                      flush=True)
            elif not args.json and not args.decisions_only:
                q = item.quality
                quality = (f"sharp {q.sharpness:6.1f} bright {q.brightness:5.1f} "
                           f"palm {q.palm_fraction:.2f} {','.join(q.problems) or 'ok'}"
                           if q else "-")
                best = f"{item.best.identity} {item.best.score:.3f}" if item.best else "-"
                print(f"  frame {item.index:4d} t={item.timestamp:6.2f}s roi={item.roi_status:<15}"
                      f" {quality} best={best}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from palmpay.demo import run_demo

    result = run_demo(host=args.host, port=args.port, serve=not args.no_serve,
                      data_dir=Path(args.data_dir))
    return 0 if result.outcomes else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from palmpay.api.server import serve

    serve(args.host, args.port, workers=args.workers)
    return 0


def _cmd_terminals_create(args: argparse.Namespace) -> int:
    from palmpay.api.keys import create_api_key
    from palmpay.config import get_settings
    from palmpay.db import open_database

    db = open_database(get_settings().resolved_database_url())
    try:
        view, secret = create_api_key(db, args.name, args.scope, args.merchant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(f"{view.scope} key {view.id} ({view.name}) of merchant {view.merchant}; "
          "the secret is shown once:")
    print(secret)
    return 0


def _cmd_merchants_create(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.db import open_database
    from palmpay.payments.merchants import create_merchant

    db = open_database(get_settings().resolved_database_url())
    try:
        merchant = create_merchant(db, args.name)
    finally:
        db.dispose()
    print(f"merchant {merchant.id} ({merchant.name}); give it keys with "
          f"`palmpay terminals create --merchant {merchant.id}`")
    return 0


def _cmd_merchants_list(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.db import open_database
    from palmpay.payments.merchants import list_merchants

    db = open_database(get_settings().resolved_database_url())
    try:
        for merchant in list_merchants(db):
            print(f"{merchant.id}  {merchant.name}")
    finally:
        db.dispose()
    return 0


def _cmd_keys_rotate(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.payments import admin

    settings = get_settings()
    if args.rewrap_only:
        print(f"re-wrapped {admin.rewrap(settings)} records under the active KEK")
        return 0
    kek_id, count = admin.rotate_keys(settings)
    print(f"new active KEK {kek_id}; re-wrapped {count} card and palm-template data keys")
    print(f"records per KEK: {admin.kek_usage(settings)}")
    return 0


def _cmd_keys_retire(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.payments import admin

    admin.retire_key(get_settings(), args.kek_id)
    print(f"retired KEK {args.kek_id}")
    return 0


def _cmd_keys_renew_templates(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.payments import admin

    key_id, count = admin.renew_templates(get_settings(), new_key=not args.renew_only)
    print(f"template key {key_id} active; renewed {count} palm templates (no re-enrolment)")
    return 0


def _cmd_retention_apply(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.payments import admin

    settings = get_settings()
    report = admin.retention(settings, dry_run=args.dry_run)
    verb = "would delete" if report.dry_run else "deleted"
    print(f"retention {settings.retention_months} months (inactive since before "
          f"{report.cutoff:%Y-%m-%d}): {verb} the palm templates of {len(report.customers)} "
          f"customers ({report.templates_deleted} templates)")
    for customer_id in report.customers:
        print(f"  {customer_id}")
    return 0


def _cmd_ledger_check(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.payments import admin

    report = admin.ledger_check(get_settings())
    print(f"checked {report.payments_checked} payments: "
          f"{'ledger balances' if report.ok else 'MISMATCH'}")
    for problem in report.problems:
        print(f"  {problem}")
    return 0 if report.ok else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from palmpay.config import get_settings
    from palmpay.decision import OperatingPoint
    from palmpay.embed import PalmEmbedder
    from palmpay.payments import admin

    settings = get_settings()
    customers, samples = admin.gallery_size(settings)
    meta = PalmEmbedder(settings).meta
    point = OperatingPoint.from_calibration(meta["open_set"], settings.target_fpir,
                                            settings.max_fnir, settings.n_safe)
    status = {"customers": customers, **point.describe(samples)}
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    threshold = float(status["threshold"])
    print(f"enrolled:        {customers} customers, {samples} palm samples")
    print(f"threshold:       {threshold:.4f} at N = {samples} "
          f"(target FPIR {settings.target_fpir:g}: at most 1 stranger in "
          f"{1 / settings.target_fpir:,.0f} charged to anyone)")
    print(f"expected:        FPIR {float(status['expected_fpir']):.2e}, "
          f"FNIR {float(status['expected_fnir']):.2%} (calibration)")
    source = ", set by PALMPAY_N_SAFE" if settings.n_safe is not None else ""
    print(f"N_safe:          {status['n_safe']:,} samples (FNIR ceiling "
          f"{settings.max_fnir:.0%}{source})")
    print("narrowing:       " + ("REQUIRED: payments ask for the last 4 phone digits"
                                 if status["narrowing_required"] else "not needed"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from palmpay.api.models import ApiKeyScope
    from palmpay.payments.merchants import DEFAULT_MERCHANT_ID

    parser = argparse.ArgumentParser(
        prog="palmpay", description="Open-source pay-by-palm on a commodity RGB camera.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging on stderr (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "eval", help="biometric accuracy over a <palm-id>/<sample> image folder",
        description="Score every image-vs-image pair of a dataset folder and print EER, FRR at "
                    "fixed FAR, rank-1 and speed. Images whose ROI fails count as 'failed'.")
    p.add_argument("dataset", help="folder of <palm-id>/<sample>.<ext> images")
    p.add_argument("--roi", choices=["detect", "given"], default="detect",
                   help="detect: find the palm in full-hand photos (default); given: images "
                        "already are palm ROIs (resized to 128x128 grey)")
    p.add_argument("--protocol", choices=["all-pairs", "sessions", "open-set"],
                   default="all-pairs",
                   help="all-pairs: every pair of images (default); sessions: s2_* images "
                        "probe s1_* images; open-set: the first half of the palms enrolled, "
                        "the rest strangers, 3-frame presentations decided at the operating "
                        "point (FPIR, FNIR, mis-identifications)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="DET.png",
                   help="save the DET curve (open-set: FPIR against N) to this PNG")
    p.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--quality-gates", action="store_true",
                   help="with --roi detect, also apply the live quality gates (sharpness, "
                        "exposure, palm size): only images that would be good frames count")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "replay", help="enroll a gallery, then run the live path over recorded frames",
        description="Enroll every palm folder of GALLERY (full-hand photos or frames), then run "
                    "the live path over SOURCE: per presentation (consecutive frames with a "
                    "hand) one decision — match, unknown or no palm.")
    p.add_argument("source", help="video file, frame folder, image, or webcam index (0)")
    p.add_argument("--gallery", required=True, help="folder of <identity>/<image> to enroll")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per presentation per line")
    p.add_argument("--decisions-only", action="store_true",
                   help="print only the presentation decisions, not every frame's quality, ROI "
                        "status and best match")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser(
        "demo", help="the whole product on SQLite: enroll the seed customers, pay with the seed "
                     "checkout video, then serve the API and kiosk",
        description="Start the API (SQLite in --data-dir, wiped first; dev-mode keyring), enroll "
                    "the seed customers over HTTP, replay the seed checkout video through POST "
                    "/v1/payments and print each payment or refusal, then keep serving until "
                    "Ctrl-C.")
    p.add_argument("--no-serve", action="store_true", help="exit after the checkout replay")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--data-dir", default="data/demo", help="demo state (deleted at start)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="run the HTTP API (settings from PALMPAY_* env vars)",
                       description="Serve the /v1 API, the kiosk pages and OpenAPI docs at "
                                   "/docs. Needs PALMPAY_DATABASE_URL (or PALMPAY_DATA_DIR for "
                                   "SQLite) and a keyring (PALMPAY_KEYRING_FILE or "
                                   "PALMPAY_KEYRING; PALMPAY_DEV_MODE=true creates one).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="API processes (PostgreSQL only "
                   "for more than 1; each keeps its own index replica)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("bench", add_help=False, prefix_chars="+", help="run the benchmarks")
    p.add_argument("rest", nargs="*")  # parsed by palmpay.bench (imported only when run)
    p.set_defaults(func=lambda args: __import__("palmpay.bench").bench.main(args.rest))

    p = sub.add_parser("terminals", help="API keys for kiosks, terminals and admins")
    terminals = p.add_subparsers(dest="terminals_command", required=True)
    q = terminals.add_parser("create", help="create an API key; prints the secret once")
    q.add_argument("--name", required=True, help="e.g. 'lane 3'")
    q.add_argument("--scope", choices=list(ApiKeyScope), default="terminal",
                   help="terminal: take payments; kiosk: enroll/unenroll; admin: everything")
    q.add_argument("--merchant", default=DEFAULT_MERCHANT_ID,
                   help="the merchant whose customers and payments the key sees (default "
                        f"{DEFAULT_MERCHANT_ID}; `palmpay merchants create` makes another)")
    q.set_defaults(func=_cmd_terminals_create)

    p = sub.add_parser("merchants", help="merchants (tenants): each sees only its own "
                                         "customers and payments")
    merchants = p.add_subparsers(dest="merchants_command", required=True)
    q = merchants.add_parser("create", help="create a merchant; prints its id")
    q.add_argument("name", help="display name, e.g. 'Corner Shop'")
    q.set_defaults(func=_cmd_merchants_create)
    q = merchants.add_parser("list", help="every merchant")
    q.set_defaults(func=_cmd_merchants_list)

    p = sub.add_parser("keys", help="card-vault key management")
    keys = p.add_subparsers(dest="keys_command", required=True)
    q = keys.add_parser("rotate", help="new key-encryption key; re-wrap every data key",
                        description="Add a new active KEK to the keyring file and re-wrap every "
                                    "card and palm-template data key under it, in batches, "
                                    "while servers keep running (they can read both).")
    q.add_argument("--rewrap-only", action="store_true",
                   help="only re-wrap records not yet under the active KEK (resumable)")
    q.set_defaults(func=_cmd_keys_rotate)
    q = keys.add_parser("renew-templates", help="new template key; renew every palm template",
                        description="Add a new cancelable-template key to the keyring file and "
                                    "move every stored palm template under it (no "
                                    "re-enrolment); restart servers afterwards.")
    q.add_argument("--renew-only", action="store_true",
                   help="only renew templates not yet under the active key (resumable)")
    q.set_defaults(func=_cmd_keys_renew_templates)
    q = keys.add_parser("retire", help="drop an old KEK (or tfk_ template key) once unused")
    q.add_argument("kek_id")
    q.set_defaults(func=_cmd_keys_retire)

    p = sub.add_parser("status", help="the gallery, its decision threshold and N_safe")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("retention", help="biometric retention policy")
    retention = p.add_subparsers(dest="retention_command", required=True)
    q = retention.add_parser("apply", help="delete the palm templates of inactive customers "
                             "(PALMPAY_RETENTION_MONTHS)")
    q.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
    q.set_defaults(func=_cmd_retention_apply)

    p = sub.add_parser("ledger", help="ledger tools")
    ledger = p.add_subparsers(dest="ledger_command", required=True)
    q = ledger.add_parser("check", help="prove every payment's balances match its ledger entries")
    q.set_defaults(func=_cmd_ledger_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``palmpay`` console script."""
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from palmpay.payments.errors import PaymentError

    try:
        return args.func(args)
    except PaymentError as err:  # a refused value, e.g. a key name with control characters
        print(f"palmpay {args.command}: {err.code}: {err.detail}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as err:
        print(f"palmpay {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
