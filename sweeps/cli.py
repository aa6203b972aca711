"""`build.py sweep --space SPACE.yaml --out DIR`: run (or continue) a design-space sweep on Ray.

    python build.py sweep --space sweeps/spaces/digits_resmlp.yaml --out out/sweep [--cpus N | --address ADDR]
    python build.py sweep --space SPACE.yaml --out DIR --list      # the trials and which are done, nothing run

Rerunning the same command skips the finished trials and retries the failed ones. Exit status: 0 when every trial
of the space finished, 1 when some failed (each has its error in DIR/trials/<id>/result.json), 2 for a bad space
file or flag, 130 when interrupted (what finished is kept).
"""

from pathlib import Path

from psa_finn.common.cli_args import positive_int
from psa_finn.common.cli_errors import EXIT_REJECTED


def add_arguments(parser, command):
    """Options of `build.py sweep`."""
    parser.description += ("; rerunning it skips finished trials and retries failed ones (exit status 1 when some "
                           "trial failed)")
    parser.add_argument("--space", required=True, type=Path,
                        help="search space YAML (examples: sweeps/spaces/*.yaml)")
    parser.add_argument("--out", required=True, type=Path,
                        help="sweep folder: trials/<id>/, results.csv/json, pareto.png, report.md")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS, else a local instance)")
    where.add_argument("--cpus", type=positive_int,
                       help="cores of the local Ray instance (default: all of this machine's)")
    parser.add_argument("--list", action="store_true", help="list the trials and whether each is done; run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished trial)")


def list_trials(space, out_dir: Path) -> int:
    """Print every trial of a grid space (or the finished ones of an NSGA-II space) with its state."""
    from psa_finn.sweeps import store
    from psa_finn.sweeps.search import records_of_space
    from psa_finn.sweeps.space import trial_id

    records = records_of_space(space, store.records(out_dir / store.TRIALS))
    ids = [trial_id(spec) for _, spec in space.grid_points()] if space.method == "grid" else list(records)
    for tid in ids:
        record = records.get(tid)
        state = "todo" if record is None else record["status"]
        print(f"{state:6s} {tid}" + (f"  ({record['error']})" if state == "failed" else ""))
    done = sum(records.get(t, {}).get("status") == "ok" for t in ids)
    print(f"{len(ids)} trial(s), {done} done" + ("" if space.method == "grid" else
                                                 f"; NSGA-II runs {space.trials} in all"))
    return 0


def run(args, command) -> int:
    """Run the sweep; print where the results are."""
    from psa_finn.sweeps.engine import run_sweep
    from psa_finn.sweeps.space import load_space

    space = load_space(args.space)
    if args.list:
        return list_trials(space, args.out)
    outcome = run_sweep(space, args.out, address=args.address, cpus=args.cpus, progress=not args.no_progress)
    failed = [r for r in outcome.rows if r["status"] != "ok"]
    print(f"sweep: {outcome.ran} trial(s) ran ({outcome.failed} failed), {outcome.reused} reused, "
          f"{outcome.wall_s:.0f} s; {len(outcome.rows)} in {args.out}/results.csv")
    print(f"report: {args.out / 'report.md'}, plot: {args.out / 'pareto.png'}")
    if failed:
        print(f"{len(failed)} trial(s) failed (errors in report.md); rerun the same command to retry them")
        return EXIT_REJECTED
    return 0
