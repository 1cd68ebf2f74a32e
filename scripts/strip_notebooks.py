"""Strip outputs from the analysts' notebooks before they are committed (or check that they are stripped).

Outputs of a notebook run hold data from a lake (record ids, scores, photos): they never go into the
repository. This clears every code cell's outputs and execution count, drops cell metadata other than
``tags`` (the ``parameters`` tag is how tests and schedulers inject the lake root), and drops notebook
metadata other than the kernel spec and language.

Run: ``.venv/bin/python scripts/strip_notebooks.py [--check] [notebooks/*.ipynb]`` (default: every notebook
under ``notebooks/``). With ``--check`` nothing is written and the exit code is 1 when a notebook needs
stripping.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")
KEEP_CELL_METADATA = ("tags",)


def strip(book: nbformat.NotebookNode) -> bool:
    """Strip ``book`` in place; return whether anything changed."""
    changed = False
    for key in [k for k in book.metadata if k not in KEEP_NOTEBOOK_METADATA]:
        del book.metadata[key]
        changed = True
    for cell in book.cells:
        for key in [k for k in cell.metadata if k not in KEEP_CELL_METADATA]:
            del cell.metadata[key]
            changed = True
        if cell.cell_type == "code":
            if cell.outputs or cell.execution_count is not None:
                changed = True
            cell.outputs = []
            cell.execution_count = None
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook needs stripping")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    dirty = []
    for path in paths:
        book = nbformat.read(path, as_version=4)
        if strip(book):
            dirty.append(path)
            if not args.check:
                nbformat.write(book, path)
    for path in dirty:
        print(f"{'needs stripping' if args.check else 'stripped'}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
