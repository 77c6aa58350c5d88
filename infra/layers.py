"""The memlayer layer as `sam build` builds it (layers/memlayer/Makefile): the package with an
unchecked-hash .pyc per module. The cold-start bench imports the functions from it, as Lambda
does, and a test checks what it holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The layer's ContentUri: the package and the Makefile that builds it.
SOURCE = Path(__file__).resolve().parent.parent / "layers" / "memlayer"


def build_memlayer_layer(
    artifacts_dir: Path, python: str = sys.executable, source: Path = SOURCE
) -> Path:
    """Runs the layer's build target on source into artifacts_dir and returns the directory
    Lambda puts on sys.path (its python/). `python` compiles: only an interpreter of its version
    uses the .pyc."""
    target = ["-f", str(source / "Makefile"), "build-MemlayerLayer"]
    variables = [f"ARTIFACTS_DIR={artifacts_dir}", f"PYTHON={python}"]
    # make from PATH, as the repository's own Makefile assumes.
    subprocess.run(["make", "-s", *target, *variables], check=True)  # noqa: S603, S607
    return artifacts_dir / "python"
