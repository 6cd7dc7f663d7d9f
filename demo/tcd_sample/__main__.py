"""``python -m tcd_sample`` runs ``tcd-sample`` (see :mod:`tcd_sample.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
