"""Does a change to the calibration pass keep every result? This checkout against another, per tensor.

Each checkout runs the calibration pass and all four algorithms (trtq.calib.run: collect_histograms,
compute_thresholds; nothing is written beside the configs) in its own process, on the same
configs; the script compares every tensor's counts, range, max |x|, doublings and four thresholds
exactly, and exits 1 on any difference.

    git worktree add /tmp/before <commit>
    python benchmarks/same_results.py --baseline /tmp/before configs/demo.yaml [more configs]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
ALGORITHMS = ("entropy", "minmax", "percentile", "mse")


def dump(config_path: Path, out: Path) -> None:
    """In the child: every tensor's histogram and thresholds, pickled."""
    from trtq.calib.run import collect_histograms
    from trtq.config import load_config
    from trtq.data.from_config import calibration_entries

    config = load_config(config_path)
    run = collect_histograms(config, calibration_entries(config))
    run.compute_thresholds()
    results = {
        name: (
            h.counts.tolist(),
            h.range,
            h.max_abs,
            h.doublings,
            [float(run.amax(name, algorithm)) for algorithm in ALGORITHMS],
        )
        for name, h in run.histograms.items()
    }
    out.write_bytes(pickle.dumps(results))


def results_of(checkout: Path, config: Path, out: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(config), str(out)], env=env, check=False, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: the calibration pass failed on {config}")
    loaded: dict[str, Any] = pickle.loads(out.read_bytes())
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--baseline", type=Path, help="the other checkout")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dump(*args.child)
        return
    if args.baseline is None or not args.configs:
        parser.error("--baseline DIR and at least one config are needed")
    table = Table(title=f"{REPO} against {args.baseline}")
    for column in ("config", "tensors", "differing", "first differing"):
        table.add_column(column)
    differ = False
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            config = config.resolve()
            before = results_of(args.baseline.resolve(), config, Path(tmp) / "before.pickle")
            after = results_of(REPO, config, Path(tmp) / "after.pickle")
            names = sorted(set(before) | set(after))
            differing = [name for name in names if before.get(name) != after.get(name)]
            differ |= bool(differing)
            first = differing[0] if differing else "-"
            table.add_row(str(config), str(len(names)), str(len(differing)), first)
    Console().print(table)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
