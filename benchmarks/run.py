"""``make bench``: skystack against its peers on the same simulated data, in one table.

    python benchmarks/run.py [--quick] [--only NAME ...] [--keep DIR] [--no-install]
                             [--results FILE] [--no-results]

1. **Peers.** For the benchmarks selected, installs what is missing: Siril (``siril-cli``) with
   ``apt-get update`` and ``apt-get install -y siril`` (through ``sudo`` when not root), the
   Python peers (``astroalign``, ``ccdproc``, ``sep``) with ``pip`` into this interpreter's
   environment, and PlanetarySystemStacker into its own venv with ``bench_planetary.py``'s
   installer (``~/.cache/skystack-bench/pss_venv``). A peer that cannot be installed is
   reported as "skipped: why" and the benchmarks run without it. ``--no-install`` only checks.
2. **Benchmarks.** Each ``bench_*.py`` runs in a child process with this interpreter, its output
   shown as it comes and kept in a log. Each simulates its own data with ``skystack.sim`` (seeded,
   so every tool of a benchmark, and every run, gets the same frames) and runs every tool on it
   in a child process of its own, measuring wall time, CPU time (user + sys of the tool's process
   tree) and peak RSS (``ru_maxrss``), and the quality of the result against the simulator's
   truth. The sets:

   ========== ======================================== ==========================================
   benchmark  ``--quick`` (~1 min on 2 cores)          full set (default; ~20 min on 2 cores)
   ========== ======================================== ==========================================
   stack      8 lights 1024x1024 + 5 bias/darks/flats  30 lights 4000x3000 (12 MP) + 5/5/5
              skystack, Siril, astroalign + ccdproc    same tools; noise, FWHM, trail, reg. error
   register   6 lights 1024x1024                       10 lights 4000x3000
              skystack, Siril, astroalign              s/frame, registered, error vs truth
   planetary  300 frames 640x480 SER                   1000 frames 640x480 SER
              skystack, PlanetarySystemStacker         SSIM and RMS against the clean image
   enhance    -                                        24 MP colour stack, every setting
   process    -                                        40 lights in 4 groups, run three times
   calibrate  -                                        50 and 10 lights of 24 MP
   fits_read  -                                        24 MP uint16 FITS
   ser_read   -                                        1024 MiB and 100 MiB SER files
   ========== ======================================== ==========================================

   What each measures, and how, is in each script's docstring.
3. **Table.** One markdown table per benchmark: a row per tool with wall s, CPU s, peak RSS MB and
   the benchmark's quality columns; in a peer's row a figure is followed by its ratio to
   skystack's, ``peer / skystack`` (``Siril 2.8 (0.53×)``: Siril took 0.53 times skystack's
   time). Scripts that take ``--json FILE`` (``bench_stack``, ``bench_register``,
   ``bench_calibrate``, ``bench_fits_read``, ``bench_ser_read``) write the table themselves;
   ``bench_planetary``'s printed table is parsed; ``bench_enhance`` and ``bench_process`` are
   quoted as they print.
4. **RESULTS.md.** ``benchmarks/RESULTS.md`` (``--results``) gets one section per set, ``quick``
   or ``full``, replaced when that set runs again (the other is kept): the date, the machine (CPU
   model and count, RAM, OS, Python, versions of skystack and every peer), the load average, the
   exact command and the tables. ``--only`` runs replace their set's section too, with only the
   benchmarks run (the command line says so); ``--no-results`` leaves the file alone.

The JSON a script writes with ``--json FILE``::

    {"benchmark": "stack", "title": "one line",
     "columns": [[key, header, format], ...],       # format for numbers, e.g. ".2f"; "" as is
     "ratios": [key, ...],                          # columns given as peer / baseline
     "rows": [{"tool": "Siril 1.0.6", "baseline": "skystack", key: value, ...,
               "skipped": "why" | "error": "what"}],  # both optional
     "notes": ["line", ...]}

Machines are noisy (other work inflates wall times; the load average is recorded): compare tools
within one run, through the ratios. ``--keep DIR`` keeps each benchmark's data and outputs in
``DIR/<name>`` and reuses simulated data found there.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PY_PEERS = ("astroalign", "ccdproc", "sep")  # import name = pip name for all three


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how run.py runs and reads it."""

    name: str
    script: str
    quick: list[str] | None  # arguments for the quick set; None: not in the quick set
    full: list[str]
    output: str  # "json" (--json FILE), "table" (a printed markdown table) or "text"
    peers: tuple[str, ...] = ()
    keep: bool = False  # takes --keep DIR


BENCHES = (
    Bench("stack", "bench_stack.py", ["--quick"], [], "json", ("siril", "python"), True),
    Bench("register", "bench_register.py", ["--quick"], [], "json", ("siril", "python"), True),
    Bench("planetary", "bench_planetary.py", ["--frames", "300"], [], "table", ("pss",), True),
    Bench("enhance", "bench_enhance.py", None, [], "text", (), True),
    Bench("process", "bench_process.py", None, [], "text", (), True),
    Bench("calibrate", "bench_calibrate.py", None, [], "json"),
    Bench("fits_read", "bench_fits_read.py", None, [], "json"),
    Bench("ser_read", "bench_ser_read.py", None, [], "json"),
)


# --------------------------------------------------------------------------- peers


def _run_quiet(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``command``; (exit code, last lines of its output)."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, check=False, timeout=3600
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return 1, str(err)
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return done.returncode, " / ".join(tail)


def ensure_siril(install: bool) -> str | None:
    """None when ``siril-cli`` is there (installed now if need be), else why not."""
    if shutil.which("siril-cli"):
        return None
    if not install:
        return "siril-cli not found (--no-install)"
    if shutil.which("apt-get") is None:
        return "siril-cli not found and no apt-get here: install Siril 1.0 by hand"
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "siril-cli not found; not root and no sudo: run 'apt-get install -y siril'"
        prefix = ["sudo"] if sys.stdin.isatty() else ["sudo", "-n"]  # never hang without a tty
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("installing Siril: apt-get update && apt-get install -y siril ...", flush=True)
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", "siril"]):
        rc, tail = _run_quiet(prefix + step, env)
        if rc != 0:
            return f"'{' '.join(prefix + step)}' failed (exit {rc}): {tail}"
    if shutil.which("siril-cli") is None:
        return "apt-get installed siril but there is no siril-cli on PATH"
    return None


def ensure_python_peers(install: bool) -> str | None:
    """None when astroalign, ccdproc and sep import (pip-installed now if need be)."""
    missing = [name for name in PY_PEERS if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    if not install:
        return f"{', '.join(missing)} not installed (--no-install)"
    print(f"installing {' '.join(missing)} with pip ...", flush=True)
    rc, tail = _run_quiet([sys.executable, "-m", "pip", "install", "--quiet", *missing])
    importlib.invalidate_caches()
    if rc != 0:
        return f"pip install {' '.join(missing)} failed (exit {rc}): {tail}"
    return None


def ensure_pss(install: bool) -> str | None:
    """None when PlanetarySystemStacker runs from its venv (installed by bench_planetary)."""
    sys.path.insert(0, str(HERE))
    import bench_planetary

    exe = bench_planetary.PSS_VENV / "bin" / "PlanetarySystemStacker"
    if not install and not exe.exists():
        return f"{exe} not found (--no-install)"
    command, why = bench_planetary._pss_command()
    return None if command is not None else why


def ensure_peers(benches: list[Bench], install: bool) -> dict[str, str | None]:
    needed = {peer for bench in benches for peer in bench.peers}
    status: dict[str, str | None] = {}
    for peer, label, ensure in (
        ("siril", "Siril", ensure_siril),
        ("python", "astroalign + ccdproc", ensure_python_peers),
        ("pss", "PlanetarySystemStacker", ensure_pss),
    ):
        if peer in needed:
            status[label] = ensure(install)
            why = status[label]
            print(f"peer {label}: " + ("ready" if why is None else f"skipped: {why}"), flush=True)
    return status


# --------------------------------------------------------------------------- machine


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    """(label, value) pairs describing this machine and the tools' versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', release.read_text(), re.MULTILINE)
        if pretty:
            os_name = f"{pretty.group(1)}, Linux {platform.release()}"
    commit = _first_line(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"])
    if commit and _first_line(["git", "-C", str(HERE), "status", "--porcelain"]):
        commit += " + uncommitted changes"
    siril = _first_line(["siril-cli", "--version"]) if shutil.which("siril-cli") else None
    sys.path.insert(0, str(HERE))
    import bench_planetary

    pss_python = bench_planetary.PSS_VENV / "bin" / "python"
    pss = None
    if pss_python.exists():
        probe = "import importlib.metadata as m; print(m.version('planetary-system-stacker'))"
        pss = _first_line([str(pss_python), "-c", probe])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cpu = (model.group(1).strip() if model else platform.processor() or "unknown") + (
        f", {os.cpu_count()} logical CPUs"
    )
    return [
        ("CPU", cpu),
        ("RAM", f"{int(total.group(1)) / 1024**2:.1f} GiB" if total else "unknown"),
        ("OS", os_name),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("skystack", f"{_version('skystack')}" + (f" (git {commit})" if commit else "")),
        ("Siril", siril or "not installed"),
        ("astroalign", _version("astroalign")),
        ("ccdproc", _version("ccdproc")),
        ("sep", _version("sep")),
        ("PlanetarySystemStacker", pss or "not installed"),
        ("numpy", _version("numpy")),
        ("load average at start (1, 5, 15 min)", load),
    ]


# --------------------------------------------------------------------------- running


def run_bench(bench: Bench, args: list[str], log: Path) -> tuple[int, str, float]:
    """Run one script, echoing its output; (exit code, its output, seconds)."""
    command = [sys.executable, "-u", str(HERE / bench.script), *args]
    print(f"\n== {bench.name}: {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    lines = []
    with open(log, "w") as out:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE
        )
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write("   " + line)
            sys.stdout.flush()
            out.write(line)
            lines.append(line)
        rc = child.wait()
    seconds = time.perf_counter() - start
    print(f"== {bench.name}: exit {rc} after {seconds:.0f} s", flush=True)
    return rc, "".join(lines), seconds


def parse_printed_table(name: str, text: str) -> dict[str, Any] | None:
    """The first markdown table a script printed (``| tool | ... |``), as a run.py table."""
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if x.startswith("| tool")), None)
    if start is None:
        return None
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows: list[dict[str, Any]] = []
    end = start + 2
    while end < len(lines) and lines[end].startswith("|"):
        cells = [c.strip() for c in lines[end].strip().strip("|").split("|")]
        row: dict[str, Any] = {"tool": cells[0]}
        failed = next((c for c in cells if c.startswith("FAILED")), None)
        for key, cell in zip(header[1:], cells[1:], strict=False):
            if not cell.startswith("FAILED"):
                row[key] = cell
        if failed:
            row["error"] = failed
        rows.append(row)
        end += 1
    skystack = next((r["tool"] for r in rows if r["tool"].startswith("skystack")), None)
    for row in rows:
        if skystack and row["tool"] != skystack and not row["tool"].startswith("best"):
            row["baseline"] = skystack
    for match in re.finditer(r"^(\S[^:\n]*): skipped, (.+)$", text, re.MULTILINE):
        rows.append({"tool": match.group(1), "skipped": match.group(2)})
    drop = {"load", "tree MB"}
    columns = [[key, key, ""] for key in header[1:] if key not in drop]
    title = lines[start - 1] if start > 0 else name
    notes = [x for x in lines[end:] if x.strip()]
    ratios = [k for k in ("wall s", "CPU s", "peak RSS MB", "RMS o/oo") if k in header]
    return {"benchmark": name, "title": title, "columns": columns, "ratios": ratios,
            "rows": rows, "notes": notes}  # fmt: skip


# --------------------------------------------------------------------------- tables


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace("×", ""))
    except ValueError:
        return None


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt and isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)


def render(table: dict[str, Any]) -> str:
    """A run.py table as markdown, with peer / baseline ratios in the peers' rows."""
    columns = table["columns"]
    rows = table["rows"]
    by_tool = {r["tool"]: r for r in rows}
    has_note = any("skipped" in r or "error" in r for r in rows)
    header = ["tool", *(label for _, label, _ in columns)] + (["note"] if has_note else [])
    out = [f"**{table['title']}**", "", "| " + " | ".join(header) + " |"]
    out.append("|" + "|".join([" --- "] + [" ---: "] * len(columns) + [" --- "] * has_note) + "|")
    for row in rows:
        base = by_tool.get(row.get("baseline", ""), {})
        cells = [row["tool"]]
        for key, _, fmt in columns:
            text = _cell(row.get(key), fmt)
            mine, theirs = _number(row.get(key)), _number(base.get(key))
            if key in table.get("ratios", []) and mine is not None and theirs:
                ratio = mine / theirs
                text += f" ({ratio:.2f}×)" if ratio < 100 else f" ({ratio:.0f}×)"
            cells.append(text)
        if has_note:
            note = row.get("skipped") and f"skipped: {row['skipped']}"
            cells.append(note or row.get("error", ""))
        out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    if table.get("notes"):
        out.append("")
        out += [f"- {note}" for note in table["notes"]]
    return "\n".join(out)


def section(mode: str, info: list[tuple[str, str]], command: str, parts: list[str]) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = "Quick set" if mode == "quick" else "Full set"
    lines = [f"<!-- bench:{mode}:begin -->", f"## {title}", ""]
    lines += [f"- Date: {now}", *(f"- {k}: {v}" for k, v in info), f"- Command: `{command}`", ""]
    lines += parts
    lines.append(f"<!-- bench:{mode}:end -->")
    return "\n".join(lines)


HEADER = """# Benchmark results

Written by `benchmarks/run.py`: `make bench` runs the full set, `make bench-quick` the quick one
(see the docstring of `benchmarks/run.py` and of each `benchmarks/bench_*.py` for what is measured
and how). Each set's section is replaced when that set runs again. In a peer's row a figure is
followed by its ratio to skystack's (`peer / skystack`: below 1 the peer's figure is smaller, e.g.
faster or less memory). Wall times on a shared machine are noisy: compare tools within one run.
"""


def update_results(path: Path, mode: str, text: str) -> None:
    """Replace ``mode``'s section of ``path`` (the full set first, then the quick one)."""
    old = path.read_text() if path.exists() else ""
    sections = {}
    for name in ("full", "quick"):
        found = re.search(
            rf"<!-- bench:{name}:begin -->.*?<!-- bench:{name}:end -->", old, re.DOTALL
        )
        sections[name] = found.group(0) if found else None
    sections[mode] = text
    body = [s for s in (sections["full"], sections["quick"]) if s]
    path.write_text(HEADER + "\n" + "\n\n".join(body) + "\n")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the small sets (a few minutes)")
    names = [b.name for b in BENCHES]
    parser.add_argument("--only", nargs="+", choices=names, help="run only these benchmarks")
    parser.add_argument("--keep", type=Path, help="keep data and outputs in DIR/<benchmark>")
    parser.add_argument("--no-install", action="store_true", help="do not install missing peers")
    parser.add_argument("--results", type=Path, default=RESULTS, help="default: %(default)s")
    parser.add_argument("--no-results", action="store_true", help="do not write the results")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    benches = [b for b in BENCHES if (b.quick is not None or not args.quick)]
    if args.only:
        benches = [b for b in benches if b.name in args.only]
        if not benches:
            parser.error(f"none of {args.only} is in the {mode} set")
    command = shlex.join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])])

    peers = ensure_peers(benches, not args.no_install)
    info = machine()
    for label, why in peers.items():
        if why is not None:
            info.append((f"{label} (peer)", f"skipped: {why}"))
    work = Path(tempfile.mkdtemp(prefix="skystack-bench-run-"))
    parts: list[str] = []
    failures = []
    total = time.perf_counter()
    try:
        for bench in benches:
            bench_args = list(bench.quick if args.quick and bench.quick is not None else bench.full)
            if bench.keep and args.keep is not None:
                bench_args += ["--keep", str((args.keep / bench.name).resolve())]
            json_path = work / f"{bench.name}.json"
            extra = ["--json", str(json_path)] if bench.output == "json" else []
            rc, text, seconds = run_bench(bench, bench_args + extra, work / f"{bench.name}.log")
            parts.append(f"### {bench.name}\n")
            table = None
            if bench.output == "json" and json_path.exists():
                table = json.loads(json_path.read_text())
            elif bench.output == "table":
                table = parse_printed_table(bench.name, text)
            if table is not None:
                parts.append(render(table))
            else:
                lines = [x for x in text.splitlines() if x.strip()]
                parts.append("```\n" + "\n".join(lines[-60:]) + "\n```")
            status = f"exit {rc}, {seconds:.0f} s"
            if rc != 0:
                failures.append(bench.name)
                status += f"; FAILED, last lines: {' / '.join(text.splitlines()[-2:])}"
            shown = shlex.join([f"benchmarks/{bench.script}", *bench_args])
            parts.append(f"\n_`{shown}`: {status}_\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    minutes = (time.perf_counter() - total) / 60
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    info.append(("run time, load average at the end", f"{minutes:.1f} min; {load}"))
    text = section(mode, info, command, parts)
    print("\n" + text)
    if not args.no_results:
        update_results(args.results, mode, text)
        print(f"\nwritten: {args.results}")
    if failures:
        print(f"failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
