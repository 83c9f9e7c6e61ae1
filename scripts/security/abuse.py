"""Replay the tenancy and abuse attack against a real server; writes docs/security/abuse.md.

Starts the real API (uvicorn on 127.0.0.1, the default settings: rate limits, lock-outs and
the bad-key back-off as shipped), on SQLite in a temporary folder or on ``--database-url``, with
two merchants: A (kiosk, terminal; one enrolled synthetic shopper who pays once) and B (kiosk,
terminal, admin). Then, from one client address, as fast as the server answers:

1. B's keys read, delete and unenroll A's customer, read A's payment and pay with A's palm;
2. 300 guessed customer ids read with A's kiosk key;
3. 200 presentations of a palm nobody enrolled at A's terminal;
4. 1,000 random API keys (last: the back-off blocks the whole address).

For each it counts the answers by status and how many *got through* (a 2xx: data read, a
customer deleted, a payment taken, a key accepted).

    .venv/bin/python scripts/security/abuse.py [--out docs/security/abuse.md] [--database-url URL]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import httpx
import numpy as np

from palmpay import synth
from palmpay.api.app import create_app
from palmpay.api.keys import create_api_key
from palmpay.api.threaded import serve_in_thread
from palmpay.config import Settings
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID, create_merchant

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
CARD = "4242424242424242"


@dataclass(frozen=True)
class Attack:
    """One attack: what was sent, the answers by status, how many got through, how long."""

    name: str
    sent: int
    statuses: Counter
    through: int
    seconds: float


def _jpeg(image: np.ndarray, ext: str = ".jpg") -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def _hand(seed: int, n: int, pose_seed: int, ext: str = ".jpg") -> list[bytes]:
    rng = np.random.default_rng(pose_seed)
    identity = synth.HandIdentity.from_seed(seed)
    calm = synth.VariationRanges(blur_sigma=(0.0, 0.6), noise_std=(1.0, 3.0))
    return [_jpeg(synth.render_hand(identity, synth.Variation.random(rng, calm, size=(640, 480))),
                  ext) for _ in range(n)]


def _files(field: str, blobs: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"{n}.jpg", b, "image/jpeg")) for n, b in enumerate(blobs)]


def _run(name: str, calls: list[Callable[[], httpx.Response]]) -> Attack:
    statuses: Counter = Counter()
    started = time.perf_counter()
    for call in calls:
        statuses[call().status_code] += 1
    seconds = time.perf_counter() - started
    through = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return Attack(name, len(calls), statuses, through, seconds)


def attack(base: str, keys: dict[str, str], victim: str, payment: str,
           a_palm: list[bytes], stranger: list[bytes]) -> list[Attack]:
    client = httpx.Client(base_url=base, timeout=60)

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[key]}"}

    def get(path: str, key: str) -> Callable[[], httpx.Response]:
        return lambda: client.get(path, headers=auth(key))

    cross = [
        get(f"/v1/customers/{victim}", "b_kiosk"),
        get(f"/v1/customers/{victim}", "b_admin"),
        lambda: client.delete(f"/v1/customers/{victim}", headers=auth("b_admin")),
        lambda: client.delete(f"/v1/customers/{victim}", headers=auth("b_kiosk")),
        lambda: client.post(f"/v1/customers/{victim}/unenroll", headers=auth("b_kiosk"),
                            files=_files("frames", a_palm), data={"card_last4": CARD[-4:]}),
        lambda: client.post(f"/v1/customers/{victim}/unenroll", headers=auth("a_kiosk"),
                            files=_files("frames", stranger), data={"card_last4": CARD[-4:]}),
        get(f"/v1/payments/{payment}", "b_terminal"),
        get(f"/v1/payments/{payment}", "b_admin"),
        lambda: client.post("/v1/payments", headers=auth("b_terminal"),
                            files=_files("frames", a_palm),
                            data={"amount": "100", "currency": "eur"}),
    ]
    results = [_run("cross-merchant reads, deletes, unenrolls and payments (B's keys on A's "
                    "customer and payment; A's kiosk with another palm)", cross)]
    results.append(_run("300 guessed customer ids (A's kiosk)", [
        get(f"/v1/customers/cus_{secrets.token_urlsafe(18)[:24]}", "a_kiosk")
        for _ in range(300)]))
    results.append(_run("200 unrecognised palms (A's terminal)", [
        (lambda: client.post("/v1/payments", headers=auth("a_terminal"),
                             files=_files("frames", stranger),
                             data={"amount": "100", "currency": "eur"}))
        for _ in range(200)]))
    results.append(_run("1,000 random API keys (one client address)", [
        (lambda: client.get("/v1/payments/pay_x", headers={
            "Authorization": f"Bearer pp_terminal_{secrets.token_urlsafe(24)}"}))
        for _ in range(1000)]))
    # the victim is untouched
    alive = client.get(f"/v1/customers/{victim}", headers=auth("a_kiosk"))
    client.close()
    if alive.status_code == 200 and alive.json()["status"] != "active":
        raise SystemExit(f"the victim was deleted: {alive.text}")
    return results


def run(settings: Settings) -> tuple[list[Attack], Settings]:
    app = create_app(settings)
    a_enroll = _hand(41, 4, 1, ".png")
    a_palm = _hand(41, 4, 2)
    stranger = _hand(977, 4, 3)
    with serve_in_thread(app) as base:
        db = app.state.palmpay.db
        b = create_merchant(db, "Merchant B").id
        keys = {"a_kiosk": create_api_key(db, "A kiosk", "kiosk", DEFAULT_MERCHANT_ID)[1],
                "a_terminal": create_api_key(db, "A lane", "terminal", DEFAULT_MERCHANT_ID)[1]}
        for scope in ("kiosk", "terminal", "admin"):
            keys[f"b_{scope}"] = create_api_key(db, f"B {scope}", scope, b)[1]
        with httpx.Client(base_url=base, timeout=120) as client:
            r = client.post("/v1/customers", headers={"Authorization": f"Bearer {keys['a_kiosk']}"},
                            data={"name": "Victim A", "card_number": CARD, "exp_month": "12",
                                  "exp_year": "2031", "consent": "true"},
                            files=[("images", (f"{n}.png", p, "image/png"))
                                   for n, p in enumerate(a_enroll)])
            if r.status_code != 201:
                raise SystemExit(f"enrolling the victim failed: {r.text}")
            victim = r.json()["id"]
            r = client.post("/v1/payments",
                            headers={"Authorization": f"Bearer {keys['a_terminal']}"},
                            files=_files("frames", a_palm),
                            data={"amount": "250", "currency": "eur"})
            if r.status_code != 201:
                raise SystemExit(f"the victim's payment failed: {r.text}")
            payment = r.json()["id"]
        results = attack(base, keys, victim, payment, a_palm, stranger)
    return results, settings


def report(results: list[Attack], settings: Settings, backend: str, argv: list[str]) -> str:
    command = "python scripts/security/abuse.py" + "".join(f" {a}" for a in argv)
    lines = [
        "# Abuse and tenancy: the attack replayed",
        "",
        f"Made by `{command}` on {datetime.now(UTC):%Y-%m-%d} against a real server (uvicorn on "
        f"127.0.0.1, {backend}, default settings), from one client address, each request sent "
        "when the previous one was answered. Before this work the same attack got everything "
        "through: B's kiosk read and deleted A's customer, 200 unrecognised palms took 14.6 s "
        "and 1,000 random keys 2.1 s without one 429.",
        "",
        "Settings: "
        f"`rate_limit_requests={settings.rate_limit_requests}`, "
        f"`rate_limit_payments={settings.rate_limit_payments}`, "
        f"`rate_limit_customers={settings.rate_limit_customers}`, "
        f"`unrecognised_max_failures={settings.unrecognised_max_failures}` "
        f"(lock-out {settings.unrecognised_lockout_s:.0f} s), "
        f"`unenroll_max_failures={settings.unenroll_max_failures}`, "
        f"`bad_key_max_failures={settings.bad_key_max_failures}` "
        f"(back-off {settings.bad_key_backoff_s:g} s, doubling).",
        "",
        "| attack | sent | 2xx (got through) | 401 | 403 | 404 | 422 | 429 | other | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in results:
        known = {401, 403, 404, 422, 429}
        other = sum(n for s, n in a.statuses.items() if s not in known and not 200 <= s < 300)
        cells = [str(a.statuses.get(s, 0)) for s in (401, 403, 404, 422, 429)]
        lines.append(f"| {a.name} | {a.sent} | {a.through} | {' | '.join(cells)} | {other} | "
                     f"{a.seconds:.1f} |")
    lines += [
        "",
        "Reading the table:",
        "",
        "- Cross-merchant: B's keys get 404 for A's customer and payment (as if they did not "
        "exist); a kiosk may no longer delete by id (403); unenrolling needs the palm and the "
        "card's last 4 digits (422 `verification_failed`); B's terminal does not recognise A's "
        "shopper (422 `palm_not_recognised`).",
        "- Guessed customer ids: ids carry 143 random bits, so none is found (404); past "
        "`rate_limit_customers` the key gets 429 `rate_limited`.",
        "- Unrecognised palms: after `unrecognised_max_failures` in a row the terminal is locked "
        "out (429 `too_many_attempts`, refused before its frames are analysed).",
        "- Random keys: after `bad_key_max_failures` unknown keys the address gets 429 "
        "`rate_limited` for a delay that doubles at each further block; while blocked its keys "
        "are not even looked up.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "security" / "abuse.md")
    parser.add_argument("--database-url", default=None,
                        help="e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test "
                             "(default: SQLite in a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), dev_mode=True, database_url=args.database_url)
        results, settings = run(settings)
    backend = "PostgreSQL" if args.database_url else "SQLite"
    text = report(results, settings, backend, sys.argv[1:] if argv is None else argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
