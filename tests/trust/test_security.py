"""Security: nothing from an input file is unpickled or evaluated, and no file name from a header
is followed outside the file's own folder.

* The source of ``src/skystack`` is parsed and searched for loads of ``pickle``, ``marshal``,
  ``shelve``, ``dill`` or ``cloudpickle``, for ``eval``/``exec``/``compile``, for
  ``numpy.load(..., allow_pickle=True)`` and for ``yaml.load`` without a safe loader. A
  finding fails the test unless it is listed, with its reason, in :data:`ALLOWED`. Dask's own
  pickling of tasks is not in our source; the ``xisf`` package parses numeric property values
  with ``ast.literal_eval``, which evaluates literals only and whose errors the XISF reader
  turns into FormatError.
* An IRAF header naming its pixel file ``../../secret.pix``, an absolute path or a
  ``node!/path`` makes the reader look only in the header's own folder, for the base name; a
  valid pixel file planted where the name points is never opened (an audit hook records every
  ``open``).
* An XISF header whose image data sits in an external file (``location="path(...)"`` or
  ``"url(...)"``, allowed by the XISF specification for distributed files) is refused without
  opening that file.
"""

from __future__ import annotations

import ast
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import skystack
import skystack.io
from skystack.errors import FormatError

SOURCE = Path(skystack.__file__).resolve().parent

ALLOWED: dict[tuple[str, str], str] = {}
"""Findings that are legitimate: ``(path relative to src/skystack, finding) -> reason``."""

_LOADERS = {
    "pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads", "Unpickler"},
    "dill": {"load", "loads"},
    "cloudpickle": {"load", "loads"},
    "marshal": {"load", "loads"},
    "shelve": {"open"},
    "joblib": {"load"},
    "torch": {"load"},
}
_BUILTINS = {"eval", "exec", "compile", "__import__"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def scan_source(text: str) -> list[str]:
    """Dangerous calls and imports in Python source, as ``"line N: what"`` strings."""
    findings: list[str] = []
    tree = ast.parse(text)
    imported: dict[str, str] = {}  # local name -> module.attr for "from pickle import loads"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _LOADERS:
            for alias in node.names:
                if alias.name in _LOADERS[node.module]:
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    findings.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        module, _, attr = name.rpartition(".")
        keywords = {k.arg: k.value for k in node.keywords}
        if name in _BUILTINS or name in imported:
            findings.append(f"line {node.lineno}: {name}()")
        elif module.split(".")[-1] in _LOADERS and attr in _LOADERS[module.split(".")[-1]]:
            findings.append(f"line {node.lineno}: {name}()")
        elif attr == "load" and module in ("np", "numpy"):
            allow = keywords.get("allow_pickle")
            if isinstance(allow, ast.Constant) and allow.value is True:
                findings.append(f"line {node.lineno}: {name}(allow_pickle=True)")
            elif allow is not None and not isinstance(allow, ast.Constant):
                findings.append(f"line {node.lineno}: {name}(allow_pickle=<expression>)")
        elif name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load"):
            loader = _dotted(keywords["Loader"]) if "Loader" in keywords else ""
            if not loader.endswith("SafeLoader"):
                findings.append(f"line {node.lineno}: {name}() without SafeLoader")
    return findings


def test_scanner_finds_what_it_looks_for():
    planted = (
        "import pickle, numpy as np, yaml\n"
        "from marshal import loads as unmarshal\n"
        "pickle.loads(b'')\n"
        "eval('1')\n"
        "exec('x = 1')\n"
        "np.load('x.npy', allow_pickle=True)\n"
        "np.load('x.npy')\n"
        "yaml.load(text)\n"
        "yaml.load(text, Loader=yaml.SafeLoader)\n"
        "unmarshal(b'')\n"
    )
    found = scan_source(planted)
    assert [f.split(":")[0] for f in found] == [
        "line 2", "line 3", "line 4", "line 5", "line 6", "line 8", "line 10"
    ], found  # fmt: skip


def test_no_pickle_or_eval_in_the_source():
    files = sorted(p for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 20, f"source not found under {SOURCE}"
    unexpected = []
    for path in files:
        relative = str(path.relative_to(SOURCE))
        for finding in scan_source(path.read_text(encoding="utf-8")):
            what = finding.split(": ", 1)[1]
            if (relative, what) not in ALLOWED:
                unexpected.append(f"{relative} {finding}")
    assert unexpected == [], "unpickling or evaluation in skystack's source:\n" + "\n".join(
        unexpected
    )


# ----------------------------------------------------------------------- paths from headers


class _Opens:
    """Records every file opened by Python code (audit hook; inert when not recording)."""

    installed = False
    recording: list[str] | None = None

    @classmethod
    def hook(cls, event: str, args: tuple[object, ...]) -> None:
        if cls.recording is not None and event == "open" and isinstance(args[0], str | bytes):
            cls.recording.append(os.path.abspath(os.fsdecode(args[0])))

    def __enter__(self) -> list[str]:
        if not _Opens.installed:
            sys.addaudithook(_Opens.hook)
            _Opens.installed = True
        _Opens.recording = []
        return _Opens.recording

    def __exit__(self, *exc: object) -> None:
        _Opens.recording = None


builders = sys.modules["skystack_trust_conftest"]  # registered by conftest.py


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """``(header folder, secret)``: a valid pixel file two levels above the header's folder."""
    header_folder = tmp_path / "night" / "m51"
    header_folder.mkdir(parents=True)
    # A valid image elsewhere: its pixel file is the "secret" a traversal would reach.
    builders.write_iraf(tmp_path / "secret.imh", np.full((6, 8), 0.5, np.float32))
    (tmp_path / "secret.imh").unlink()
    return header_folder, tmp_path / "secret.pix"


@pytest.mark.parametrize(
    "name",
    ["../../secret.pix", "HDR$../../secret.pix", "{secret}", "node!{secret}",
     "imdir$/../../secret.pix", "..\\..\\secret.pix"],
    ids=["parent-dirs", "hdr-parent-dirs", "absolute", "node-absolute", "imdir", "backslashes"],
)  # fmt: skip
def test_iraf_pixel_file_name_never_leaves_the_header_folder(planted, name):
    header_folder, secret = planted
    header = header_folder / "pix.imh"
    builders.write_iraf(header, pixfile=name.format(secret=secret), write_pixels=False)
    with _Opens() as opened, pytest.raises(FormatError, match=r"IRAF pixel file not found"):
        skystack.io.read(header)
    # Module imports open files too: only the test's own tree matters.
    mine = [p for p in opened if Path(p).is_relative_to(secret.parent)]
    outside = [p for p in mine if Path(p).parent != header_folder]
    assert outside == [], f"opened outside {header_folder}: {outside}"
    assert str(secret) not in opened


def test_iraf_pixel_file_found_by_base_name_in_the_header_folder(planted):
    """The base name of a foreign path is looked up beside the header, and only there."""
    header_folder, secret = planted
    header = header_folder / "renamed.imh"
    builders.write_iraf(header, pixfile=str(secret), write_pixels=False)
    (header_folder / "secret.pix").write_bytes(secret.read_bytes())
    with _Opens() as opened:
        frame = skystack.io.read(header)
    assert frame.data.shape == (6, 8) and float(frame.data[0, 0]) == 0.5
    mine = [p for p in opened if Path(p).is_relative_to(secret.parent)]
    assert mine and all(Path(p).parent == header_folder for p in mine), mine


@pytest.mark.parametrize(
    "location",
    ['path({secret})', 'url(file://{secret})', 'path(@header_dir/../secret.bin)'],
    ids=["path", "url", "header-dir"],
)  # fmt: skip
def test_xisf_external_data_blocks_are_refused(location, good_files, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(48, 0.5, np.float32).tobytes())
    folder = tmp_path / "images"
    folder.mkdir()
    data = good_files["xisf"].read_bytes()
    (length,) = struct.unpack_from("<I", data, 8)
    xml = data[16 : 16 + length].decode()
    start = xml.index('location="') + len('location="')
    stop = xml.index('"', start)
    changed = (xml[:start] + location.format(secret=secret) + xml[stop:]).encode()
    path = folder / "external.xisf"
    path.write_bytes(data[:8] + struct.pack("<I", len(changed)) + data[12:16] + changed
                     + data[16 + len(changed) :])  # fmt: skip
    with _Opens() as opened, pytest.raises(FormatError, match=r"data are in another file"):
        skystack.io.read(path)
    mine = [p for p in opened if Path(p).is_relative_to(tmp_path)]
    assert str(secret) not in mine and all(Path(p).parent == folder for p in mine), mine
