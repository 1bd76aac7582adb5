"""Checks a job command line against the real binary: the arguments (a DAG task's as Airflow
renders them: rendering.py) followed by --help must parse, so an unknown flag or a bad value fails
here; and the environment variables a pod sets must be ones the binary reads."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("KAPPA_BIN_DIR", ROOT / "target" / "debug"))
JOBS = {"kappa", "order-generator", "match-maker", "sma-calculator", "profit-calculator", "market-view", "fix-gateway"}


def help_text(binary: str) -> str:
    """The `--help` text of one of the image's binaries (built by cargo in target/debug)."""
    assert binary in JOBS, f"{binary} is not one of the image's binaries {sorted(JOBS)}"
    exe = BIN_DIR / binary
    assert exe.exists(), f"{exe} missing: build the binaries first (cargo build), or set KAPPA_BIN_DIR"
    return subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout


def check_command(binary: str, args: list[str]) -> None:
    text = help_text(binary)
    exe = BIN_DIR / binary
    for a in args:
        if a.startswith("--"):
            assert re.search(rf"(^|\s){re.escape(a)}[\s=]", text), f"{binary} has no flag {a}"
    # Parse for real: clap rejects unknown flags and bad values before it reaches --help.
    run = subprocess.run([exe, *args, "--help"], capture_output=True, text=True)
    assert run.returncode == 0, f"{binary} {' '.join(args)}: {run.stderr}"


def check_env(binary: str, names: set[str]) -> None:
    """Every variable in `names` is the environment variable of one of `binary`'s flags (clap
    prints `[env: NAME=…]`, or `[env: NAME]` for hidden values), so a misspelled or unsupported
    name, which the job would silently ignore, fails here."""
    text = help_text(binary)
    unknown = sorted(n for n in names if not re.search(rf"\[env: {re.escape(n)}[=\]]", text))
    assert not unknown, f"{binary} reads no variable {unknown}"
