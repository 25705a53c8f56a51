"""No data loss: inputs are only ever read, outputs are never clobbered or left half-written.

Each command of :data:`COMMANDS` runs through :func:`skystack.cli.main.main` on small simulated
data, and the tests check that

* every input file keeps its SHA-256, size and modification time, no file appears in or leaves an
  input folder, and no input is opened for writing, renamed, removed or truncated (an audit hook
  watches ``open``, ``os.rename``, ``os.remove`` ... in this process; inputs are also made
  read-only when the tests do not run as root, which ignores permissions);
* an existing output is not replaced without ``--overwrite`` (exit code 2, a one-line message
  naming it and the option, the file unchanged);
* a full disk while the output is written (the FITS writer patched to write half a file and raise
  ``ENOSPC``) stops the command with exit code 2 and a one-line message that names the output,
  says the disk is full and how much space it needs, and leaves no output or temporary file.

To cover another command, add one :class:`Command` to :data:`COMMANDS`: a function that writes
its inputs under a folder, one that builds its arguments from that folder and the output path,
and, when they differ from a single ``result.fits``, what ``-o`` names (``output``), a glob of the
FITS results it writes (``written``) and whether a re-run updates its output folder instead of
refusing (``owns_output``, as ``process`` does).
"""

from __future__ import annotations

import fnmatch
import hashlib
import mmap
import os
import re
import shutil
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skystack.cli.main import main

# ---------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    """A command run on simulated inputs.

    Attributes
    ----------
    id : str
        Test id.
    prepare : callable
        ``prepare(folder)`` writes the inputs under ``folder``; everything there counts as input.
    argv : callable
        ``argv(inputs, output)`` returns the command line (without ``--overwrite``) for the
        inputs folder and the output path (``OUTPUTS/output``).
    output : str
        What ``-o`` names, relative to the test's output folder: a file or a folder.
    written : str
        Glob, relative to the output folder, of the FITS files the command writes through
        :func:`skystack.io.write` as its result; the full-disk test makes their writes fail.
    owns_output : bool
        True for a command that updates its existing output on a re-run (``process`` resumes
        in its folder) instead of refusing without ``--overwrite``.
    """

    id: str
    prepare: Callable[[Path], None]
    argv: Callable[[Path, Path], list[str]]
    output: str = "result.fits"
    written: str = "result.fits"
    owns_output: bool = False


def _deep_sky(folder: Path) -> None:
    from skystack.sim import SessionConfig, write_session

    config = SessionConfig(width=160, height=120, n_lights=4, n_bias=2, n_darks=2, n_flats=2,
                           star_count=60, extended="galaxy", shift_px=4.0)  # fmt: skip
    write_session(folder, config, seed=11)


def _linear_image(folder: Path) -> None:
    """A linear, stacked-looking image for ``enhance``: a noise-free simulated sky."""
    import numpy as np

    import skystack.io
    from skystack.sim import SessionConfig, make_session, render_scene

    session = make_session(SessionConfig(width=160, height=120, star_count=80,
                                         extended="galaxy"), seed=5)  # fmt: skip
    scene = np.asarray(render_scene(session), dtype=np.float32)
    scene = scene / np.float32(scene.max() * 1.2) + np.float32(0.05)
    folder.mkdir(parents=True, exist_ok=True)
    skystack.io.write(scene, folder / "stacked.fits")


def _planetary_video(folder: Path) -> None:
    from skystack.sim import PlanetaryConfig, write_planetary_ser

    folder.mkdir(parents=True, exist_ok=True)
    write_planetary_ser(folder / "jupiter.ser", PlanetaryConfig(width=96, height=72, n_frames=12),
                        seed=2)  # fmt: skip


COMMANDS: tuple[Command, ...] = (
    Command(
        "stack",
        _deep_sky,
        lambda inputs, out: [
            "stack",
            str(inputs / "lights"),
            "--bias",
            str(inputs / "bias"),
            "--darks",
            str(inputs / "darks"),
            "--flats",
            str(inputs / "flats"),
            "-o",
            str(out),
        ],
    ),  # fmt: skip
    Command(
        "enhance",
        _linear_image,
        lambda inputs, out: ["enhance", str(inputs / "stacked.fits"), "-o", str(out)],
    ),
    Command(
        "planetary",
        _planetary_video,
        lambda inputs, out: [
            "planetary",
            str(inputs / "jupiter.ser"),
            "-o",
            str(out),
            "--ap-size",
            "32",
        ],
    ),  # fmt: skip
    Command(
        "process",
        _deep_sky,
        lambda inputs, out: ["process", str(inputs), "-o", str(out)],
        output="result",
        written="result/*/*.fits",
        owns_output=True,
    ),
)
COMMAND_IDS = [command.id for command in COMMANDS]


# ------------------------------------------------------------------------- watching inputs


@dataclass(frozen=True)
class FileState:
    sha256: str
    size: int
    mtime_ns: int


def snapshot(folder: Path) -> dict[str, FileState]:
    """Every file under ``folder``: content hash, size and modification time."""
    states: dict[str, FileState] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            states[str(path.relative_to(folder))] = FileState(
                digest, info.st_size, info.st_mtime_ns
            )
    return states


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_MUTATING_EVENTS = frozenset(
    {"os.rename", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime", "shutil.rmtree"}
)


class InputWatch:
    """An audit hook recording any write-capable access to files under the watched folders.

    Audit hooks cannot be removed, so one hook is installed per process and does nothing while
    no folder is watched.
    """

    _installed = False
    _roots: tuple[str, ...] = ()
    violations: list[str] = []  # noqa: RUF012 - one list for the one hook of the process

    @classmethod
    def _hook(cls, event: str, args: tuple[object, ...]) -> None:
        if not cls._roots:
            return
        if event == "open":
            path, mode, flags = args
            writing = isinstance(flags, int) and flags & _WRITE_FLAGS
            if writing and cls._watched(path):
                cls.violations.append(f"open({path!r}, mode={mode!r}, flags={flags:#o})")
        elif event == "mmap.__new__":
            fileno, _length, access, _offset = args
            if access in (mmap.ACCESS_WRITE, mmap.ACCESS_DEFAULT) and isinstance(fileno, int):
                try:
                    target = os.readlink(f"/proc/self/fd/{fileno}")
                except OSError:
                    return
                if cls._watched(target):
                    cls.violations.append(f"writable mmap of {target}")
        elif event in _MUTATING_EVENTS and any(cls._watched(path) for path in args[:2]):
            cls.violations.append(f"{event}{args[:2]!r}")

    @classmethod
    def _watched(cls, path: object) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False
        full = os.path.abspath(path)
        return any(full == root or full.startswith(root + os.sep) for root in cls._roots)

    @classmethod
    def watching(cls, *folders: Path) -> _Watching:
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True
        return _Watching(cls, tuple(os.path.abspath(f) for f in folders))


class _Watching:
    def __init__(self, watch: type[InputWatch], roots: tuple[str, ...]) -> None:
        self.watch, self.roots = watch, roots

    def __enter__(self) -> list[str]:
        self.watch.violations = []
        self.watch._roots = self.roots
        return self.watch.violations

    def __exit__(self, *exc: object) -> None:
        self.watch._roots = ()


def _make_read_only(folder: Path) -> None:
    """Files 0444 and folders 0555 (nothing can be written or created) unless running as root."""
    if os.geteuid() == 0:
        return
    for path in [*folder.rglob("*"), folder]:
        mode = path.stat().st_mode
        path.chmod(stat.S_IMODE(mode) & ~0o222)


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each command's simulated inputs, written once per module."""
    folders = {}
    for command in COMMANDS:
        folder = tmp_path_factory.mktemp(f"inputs-{command.id}")
        command.prepare(folder)
        folders[command.id] = folder
    return folders


@pytest.fixture
def run_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(inputs, outputs)`` folders of one test; the inputs are made writable again after."""
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    outputs.mkdir()
    yield inputs, outputs
    if inputs.exists():
        _make_writable(inputs)


def _copy_inputs(originals: dict[str, Path], command: Command, inputs: Path) -> None:
    shutil.copytree(originals[command.id], inputs)
    _make_read_only(inputs)


def _run(argv: list[str]) -> int:
    with warnings.catch_warnings():
        # Skipped frames and the like are reported as warnings; they are not the point here.
        warnings.simplefilter("ignore")
        return main(argv)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("skystack: error:")]


# ----------------------------------------------------------------------------------- tests


def _written(outputs: Path, command: Command) -> list[Path]:
    return sorted(p for p in outputs.glob(command.written) if p.is_file())


_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.partial(?P<suffix>\.[^.]+)$")


def _target_of(temporary: Path) -> Path | None:
    """The output a temporary file of :func:`skystack.io._atomic.atomic_path` stands for."""
    match = _TEMPORARY.match(temporary.name)
    if match is None:
        return None
    return temporary.with_name(match["stem"] + match["suffix"])


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_inputs_are_only_read_and_outputs_not_replaced(command, originals, run_dirs, capsys):
    inputs, outputs = run_dirs
    _copy_inputs(originals, command, inputs)
    out = outputs / command.output
    before = snapshot(inputs)
    with InputWatch.watching(inputs) as violations:
        code = _run(command.argv(inputs, out))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _written(outputs, command), f"no {command.written} in {outputs}"
    assert violations == [], violations
    after = snapshot(inputs)
    assert after.keys() == before.keys(), "files appeared in or left an input folder"
    changed = [name for name in before if after[name] != before[name]]
    assert changed == [], f"inputs changed: {changed}"

    # The same command again: it refuses to replace its output, or (owns_output) updates it.
    written = snapshot(outputs)
    with InputWatch.watching(inputs) as violations:
        code = _run(command.argv(inputs, out))
    err = capsys.readouterr().err
    assert violations == [] and snapshot(inputs) == before
    if command.owns_output:
        assert code == 0, err
        return
    assert code == 2
    lines = _error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(out) in lines[0] or out.name in lines[0], lines[0]
    assert "--overwrite" in lines[0]
    assert snapshot(outputs) == written, "an existing output was modified"


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_full_disk_while_writing_the_output(command, originals, run_dirs, monkeypatch, capsys):
    import skystack.io.fits as fits_module

    inputs, outputs = run_dirs
    _copy_inputs(originals, command, inputs)
    out = outputs / command.output
    real_writer = fits_module.write_fits
    attempts: list[Path] = []

    def disk_fills_up(data, path, **kwargs):
        # Only the result (written as a hidden temporary beside it); caches are written as usual.
        target = _target_of(Path(path))
        if target is None or not target.is_relative_to(outputs):
            return real_writer(data, path, **kwargs)
        if not fnmatch.fnmatch(str(target.relative_to(outputs)), command.written):
            return real_writer(data, path, **kwargs)
        attempts.append(target)
        Path(path).write_bytes(b"SIMPLE  =                    T / half of a FITS file")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(fits_module, "write_fits", disk_fills_up)
    before = snapshot(inputs)
    code = _run(command.argv(inputs, out))
    err = capsys.readouterr().err
    assert attempts, "the result was never written"
    assert code == 2, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    message = lines[0]
    assert str(attempts[0]) in message, message
    assert "no space left" in message and "the disk is full" in message, message
    assert re.search(r"needs about \d+(\.\d+)? (bytes|kB|MB|GB)", message), message
    assert not [p for p in attempts if p.exists()], "a partial result was left behind"
    temporaries = [p for p in outputs.rglob("*") if _target_of(p) is not None]
    assert temporaries == [], f"temporary files left behind: {temporaries}"
    assert snapshot(inputs) == before


def test_full_disk_while_writing_the_cache(originals, run_dirs, monkeypatch, capsys):
    """``stack`` writes calibrated frames and masters to its cache first: a full disk there
    stops it the same way, leaving the cache resumable and no temporary file."""
    import skystack.io.fits as fits_module

    command = next(c for c in COMMANDS if c.id == "stack")
    inputs, outputs = run_dirs
    _copy_inputs(originals, command, inputs)
    out = outputs / "result.fits"

    def disk_full(data, path, **kwargs):
        Path(path).write_bytes(b"SIMPLE  =")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(fits_module, "write_fits", disk_full)
    before = snapshot(inputs)
    code = _run(command.argv(inputs, out))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "no space left" in lines[0] and re.search(r"needs about \d", lines[0]), lines[0]
    assert not out.exists()
    files = [p for p in outputs.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".fits"], files
    assert not [p for p in files if ".partial." in p.name], files
    assert snapshot(inputs) == before


def test_the_watch_sees_writes(tmp_path):
    """The audit hook notices an input opened for writing, renamed or removed."""
    victim = tmp_path / "light.fits"
    victim.write_bytes(b"data")
    with InputWatch.watching(tmp_path) as violations:
        victim.open("rb").close()
        assert violations == []
        victim.open("ab").close()
        os.replace(victim, tmp_path / "moved.fits")
    assert len(violations) == 2, violations
    assert InputWatch._roots == ()
