"""``tcd-comfyui-install``: put the TCD nodes into a ComfyUI installation, in one command.

It writes ``custom_nodes/tcd_core_nodes/__init__.py``, two lines that import the node pack
installed with tcd-core (:mod:`tcd_kdiffusion.comfyui`), so ComfyUI finds the nodes at its next
start and the nodes stay those of the installed tcd-core (``pip install -U`` updates them).
Run it with the Python that runs ComfyUI, where tcd-core is installed::

    pip install "tcd-core[kdiffusion]"        # into ComfyUI's environment
    tcd-comfyui-install /path/to/ComfyUI       # or: python -m tcd_kdiffusion.comfyui.install …
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["FOLDER", "SHIM", "install", "main"]

#: The folder written into ``custom_nodes``.
FOLDER = "tcd_core_nodes"

_MARK = "# Written by tcd-comfyui-install"

#: The folder's ``__init__.py``.
SHIM = f"""{_MARK}: the TCD nodes of the installed tcd-core (tcd_kdiffusion.comfyui).
from tcd_kdiffusion.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
"""


def custom_nodes_dir(comfyui: str | os.PathLike[str]) -> Path:
    """``comfyui``'s ``custom_nodes`` folder: ``comfyui`` itself when it is one, else its
    ``custom_nodes`` subfolder (ValueError when neither exists)."""
    path = Path(comfyui).expanduser().resolve()
    if path.name == "custom_nodes" and path.is_dir():
        return path
    if (path / "custom_nodes").is_dir():
        return path / "custom_nodes"
    raise ValueError(
        f"{path} is not a ComfyUI folder (it has no custom_nodes folder): pass the folder that "
        f"holds ComfyUI's main.py, or its custom_nodes folder"
    )


def install(comfyui: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the pack's folder into ``comfyui``'s ``custom_nodes``; returns its ``__init__.py``.

    Rewriting an earlier install is fine; a foreign ``__init__.py`` in the way is kept unless
    ``force`` (ValueError).
    """
    target = custom_nodes_dir(comfyui) / FOLDER / "__init__.py"
    if target.exists() and not force and not target.read_text().startswith(_MARK):
        raise ValueError(f"{target} exists and was not written by tcd-comfyui-install (--force)")
    target.parent.mkdir(exist_ok=True)
    target.write_text(SHIM)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tcd-comfyui-install",
        description="Install tcd-core's TCD nodes into ComfyUI (writes custom_nodes/"
        f"{FOLDER}/__init__.py, which imports tcd_kdiffusion.comfyui). Run it with the Python "
        "that runs ComfyUI.",
    )
    parser.add_argument(
        "comfyui",
        nargs="?",
        default=os.environ.get("COMFYUI_PATH", "."),
        help="ComfyUI's folder or its custom_nodes folder (default: $COMFYUI_PATH, else .)",
    )
    parser.add_argument("--force", action="store_true", help="replace a foreign __init__.py")
    args = parser.parse_args(argv)
    try:
        import tcd_kdiffusion.comfyui as pack

        target = install(args.comfyui, force=args.force)
    except (ImportError, ValueError, OSError) as err:
        print(f"tcd-comfyui-install: {err}", file=sys.stderr)
        return 1
    nodes = ", ".join(pack.NODE_DISPLAY_NAME_MAPPINGS.values())
    print(f"wrote {target}\nnodes: {nodes}\nComfyUI must run with this Python: {sys.executable}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
