"""`palmpay demo --no-serve`: the seed customers enroll over HTTP and the seed video pays."""

from __future__ import annotations

import json

from palmpay import cli
from palmpay.config import Settings
from palmpay.demo import SEEDS_DIR, run_demo
from palmpay.payments import admin


def test_demo_pays_with_a_palm_and_refuses_an_unknown_one(tmp_path, capsys):
    seeds = json.loads((SEEDS_DIR / "customers.json").read_text())
    plans = seeds["checkout_video"]["presentations"]
    result = run_demo(port=0, serve=False, data_dir=tmp_path / "demo")
    assert set(result.enrolled) == {c["handle"] for c in seeds["customers"]}
    paid, refused = result.outcomes
    assert paid["status"] == "succeeded"
    assert paid["customer"] == result.enrolled[plans[0]["identity"]]
    assert (paid["amount"], paid["currency"]) == (plans[0]["amount"], plans[0]["currency"])
    assert refused["code"] == "palm_not_recognised"
    out = capsys.readouterr().out
    assert "PAID 12.50 EUR — Grace Hopper" in out and "REFUSED 8.99 EUR" in out
    assert "/kiosk/checkout#key=pp_terminal_" in out
    # The payment is in the demo's SQLite database and its ledger balances.
    settings = Settings(data_dir=tmp_path / "demo", database_url=None, dev_mode=True)
    report = admin.ledger_check(settings)
    assert report.ok and report.payments_checked == 1


def test_demo_command_line(tmp_path, capsys):
    assert cli.main(["demo", "--no-serve", "--port", "0", "--data-dir",
                     str(tmp_path / "d")]) == 0
    assert "PAID" in capsys.readouterr().out
