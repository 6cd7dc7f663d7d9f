"""``python -m tcd_core`` runs ``tcd-sample`` (see :mod:`tcd_core.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
