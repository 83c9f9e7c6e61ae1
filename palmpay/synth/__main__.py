"""``python -m palmpay.synth {gallery,video,frame} ...``: see :func:`palmpay.synth.cli.main`."""

from palmpay.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
