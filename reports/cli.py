"""`build.py report DIR [DIR ...] [--out OUTDIR]`: tables, CSV and plots comparing finn-plus build directories."""

import sys

from psa_finn.common.output_paths import check_own_folder
from psa_finn.reports.build_report import CSV_FILE, REPORT_FILE, write_report

DEFAULT_OUT = "out/report"


def add_arguments(parser, command):
    """Arguments of `build.py report`."""
    parser.add_argument("build_dirs", nargs="+", metavar="DIR",
                        help="build directories (the --out of `build.py build`); the first is the reference")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"folder for report.md, builds.csv and the PNG plots (default {DEFAULT_OUT})")
    parser.add_argument("--title", default="psa-finn build report", help="title of report.md")


def run(args, command) -> int:
    """Write the report; print its paths, and every warning on stderr. An unusable build directory is bad input
    (BuildSummaryError, exit 2), and so is an --out holding files of others (a build folder, the user's own), an
    unwritable --out an environment failure (exit 3)."""
    check_own_folder(args.out, (REPORT_FILE, CSV_FILE), "report")
    files = write_report(args.build_dirs, args.out, title=args.title)
    for warning in files.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {files.report}")
    print(f"csv:    {files.csv}")
    for plot in files.plots:
        print(f"plot:   {plot}")
    return 0
