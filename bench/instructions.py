"""Cold start in instructions: what bench.coldstart measures in time, counted by valgrind, so
the figure does not move with the load of a shared machine.

Each target's init (`bench.coldstart.init`: the function's module imported from the built
layer, or the bare FastAPI + Mangum + boto3 baseline) runs in a fresh interpreter under
callgrind; the same interpreter with the same preamble and no init ("none") is subtracted.
The ratio to the baseline is issue 12's cold-start figure. Needs `valgrind` on PATH; about
1.5 minutes per target.

    python -m bench.instructions [--functions retrieval memories]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.coldstart import ROOT, child_environment, deployed_constants, http_functions, init
from infra.layers import build_memlayer_layer

RESULTS = ROOT / "bench" / "results" / "instructions.json"
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(target: str, layer: Path) -> None:
    """Runs under callgrind: the same preamble as bench.coldstart's child, then the init."""
    sys.path[:0] = [str(layer), str(ROOT)]
    from bench.inprocess import LambdaContext  # noqa: F401 - the preamble both benches share

    if target != "none":
        init(target, layer)
    os._exit(0)  # interpreter teardown is not part of a cold start


def count(target: str, layer: Path, env: dict[str, str]) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "bench.instructions",
            "--child",
            target,
            "--layer",
            str(layer),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    found = _COLLECTED.search(out.stderr)
    if found is None:
        raise RuntimeError(f"{target}: no instruction count in valgrind's output")
    return int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--layer", type=Path)
    parser.add_argument("--functions", nargs="*", help="only these (default: every HTTP one)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.layer)
        return
    env = child_environment(deployed_constants())
    functions = args.functions or http_functions()
    with tempfile.TemporaryDirectory(prefix="memlayer-layer-") as artifacts:
        layer = build_memlayer_layer(Path(artifacts))
        preamble = count("none", layer, env)
        inits = {t: count(t, layer, env) - preamble for t in ["baseline", *functions]}
    baseline = inits["baseline"]
    result = {
        "unit": "instructions (millions) of init, the preamble subtracted",
        "preamble_m": round(preamble / 1e6, 1),
        "functions": {
            target: {"init_m": round(n / 1e6, 1), "x_baseline": round(n / baseline, 3)}
            for target, n in inits.items()
        },
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for target, row in result["functions"].items():
        print(f"{target:<10} {row['init_m']:>9.1f} M  {row['x_baseline']:.3f}x")


if __name__ == "__main__":
    main()
