"""`make bench`: the merge and landing benchmarks (design/BENCHMARKS.md B3, B5, B5b, B6, B7).

    .venv/bin/python -m benchmarks.run [--quick | --medium | --full] [--only b3,b5,b5b,b6,b7] [--reps N]
                                       [--set b5.rows=2000000 ...] [--keep] [--no-write | --out DIR]

Profiles: `--quick` (the default; small sizes, minutes), `--medium` (2M-row bases), `--full` (the design's
sizes: a 20M-row base; hours on a 2-core machine). `--set bench.param=value` overrides one parameter of a
profile (JSON values: `--set b3.histories=[0,1000]`). Each benchmark writes
benchmarks/results/<bench>-<profile>.json and prints its table. Everything runs on a private lake in a
temporary folder (`CDC_BENCH_TMP` picks its parent); the shared stack and lake are never touched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common as c

BENCHES = {
    "b3": "benchmarks.b3_commit",
    "b5": "benchmarks.b5_merge",
    "b6": "benchmarks.b6_bucket_join",
    "b5b": "benchmarks.b5b_cadence",
    "b7": "benchmarks.b7_small_files",
}
DEFAULT_REPS = {"quick": 5, "medium": 5, "full": 7}


def _override(params: dict[str, Any], assignments: list[str], bench: str) -> dict[str, Any]:
    out = dict(params)
    for item in assignments:
        key, sep, raw = item.partition("=")
        name, _, param = key.partition(".")
        if not sep or not param:
            raise SystemExit(f"--set takes bench.param=value, not {item!r}")
        if name != bench:
            continue
        try:
            out[param] = json.loads(raw)
        except json.JSONDecodeError:
            out[param] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="profile", action="store_const", const="quick", help="small sizes (default)")
    size.add_argument("--medium", dest="profile", action="store_const", const="medium", help="2M-row bases")
    size.add_argument("--full", dest="profile", action="store_const", const="full", help="the design's sizes (hours)")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (at least 5; default 5, full 7)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="BENCH.PARAM=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary lake")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument("--out", type=Path, default=c.RESULTS, help="where the records go (default benchmarks/results)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    profile = args.profile or "quick"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "pyiceberg", "urllib3", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("benchmarks")
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; known: {', '.join(BENCHES)}")
    reps = args.reps or DEFAULT_REPS[profile]
    if reps < 5:
        log.warning("%d repetitions: BENCHMARKS.md asks for at least 5 (the record says so)", reps)
    failed = []
    with c.workdir(keep=args.keep) as root:
        ctx = c.Context(profile, reps, root, c.Lake(root / "home", c.private_settings(root / "home")))
        try:
            for bench in chosen:
                module = importlib.import_module(BENCHES[bench])
                params = _override(module.PROFILES[profile], args.sets, bench)
                log.info("%s (%s): %s", bench, profile, json.dumps(params))
                started, load = time.monotonic(), c.load_average()
                try:
                    results, notes = module.run(ctx, params)
                except Exception:
                    log.exception("%s failed", bench)
                    failed.append(bench)
                    continue
                if reps < 5:
                    notes = [*notes, f"only {reps} repetitions (BENCHMARKS.md asks for at least 5)"]
                rec = c.record(bench, profile, {**params, "reps": reps}, results, ctx.settings, started, load, notes)
                if not args.no_write:
                    path = c.write_record(rec, args.out)
                    log.info("%s: wrote %s", bench, path)
                print(f"\n## {bench} ({profile}, {reps} repetitions, {rec['wall_seconds']:.0f} s)")  # noqa: T201
                for line in module.report(results):
                    print(line)  # noqa: T201
                for note in notes:
                    print(f"- {note}")  # noqa: T201
                sys.stdout.flush()
        finally:
            ctx.stop()
    if failed:
        log.error("failed: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
