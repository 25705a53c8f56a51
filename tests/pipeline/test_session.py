"""Session discovery: kinds from headers, folders and names; grouping; calibration matching."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skystack.errors import MissingFileError
from skystack.io import write
from skystack.pipeline.session import (
    LightGroup,
    Session,
    SessionFile,
    describe_session,
    discover_session,
    group_name,
)
from skystack.sim import SessionConfig, write_session

_SHAPE = (48, 64)


def _config(**changes: object) -> SessionConfig:
    small = dict(width=64, height=48, n_lights=2, n_bias=2, n_darks=2, n_flats=2, star_count=10)
    small.update(extended="none", dust_count=0, bright_star_count=1, target="M42")
    small.update(changes)
    return SessionConfig(**small)  # type: ignore[arg-type]


def _fits(path: Path, shape: tuple[int, ...] = _SHAPE, **cards: object) -> Path:
    """A small FITS file with only the given header cards (``CCD_TEMP`` for ``CCD-TEMP``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("_", "-")] = value
    fits.PrimaryHDU(np.full(shape, 1000, dtype=np.uint16), header).writeto(path)
    return path


def _group(session: Session, name: str) -> LightGroup:
    found = [g for g in session.groups if g.name == name]
    assert found, f"no group {name!r} in {[g.name for g in session.groups]}"
    return found[0]


def _file(session: Session, name: str) -> SessionFile:
    for g in session.groups:
        for f in (*g.lights, *g.darks, *g.flats, *g.bias, *g.dark_flats):
            if f.path.name == name:
                return f
    raise AssertionError(f"{name} is in no group")


def _unused(session: Session) -> dict[str, str]:
    return {p.name: reason for p, reason in session.unused}


# --------------------------------------------------------------------------------------------
# A simulated night: two filters x two exposures


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("night")
    # Ha 300 s and OIII 60 s bring their darks, flats and bias; the other two only lights.
    write_session(root / "Ha_300", _config(filter="Ha", exposure_s=300.0), seed=1)
    write_session(root / "OIII_60", _config(filter="OIII", exposure_s=60.0, n_bias=0), seed=2)
    bare = dict(n_darks=0, n_flats=0, n_bias=0)
    write_session(root / "Ha_60", _config(filter="Ha", exposure_s=60.0, **bare), seed=3)
    write_session(root / "OIII_300", _config(filter="OIII", exposure_s=300.0, **bare), seed=4)
    return discover_session(root)


def test_two_filters_and_two_exposures_make_four_groups(two_by_two: Session) -> None:
    names = sorted(g.name for g in two_by_two.groups)
    assert names == ["M42-Ha-300s", "M42-Ha-60s", "M42-OIII-300s", "M42-OIII-60s"]
    for g in two_by_two.groups:
        assert len(g.lights) == 2
        assert {f.filter for f in g.lights} == {g.filter}
        assert {f.kind for f in g.lights} == {"light"}


def test_darks_are_matched_by_exposure_and_flats_by_filter(two_by_two: Session) -> None:
    for g in two_by_two.groups:
        assert len(g.darks) == 2 and {d.exposure for d in g.darks} == {g.exposure}
        assert len(g.flats) == 2 and {f.filter for f in g.flats} == {g.filter}
        assert len(g.bias) == 2  # gain 100 everywhere: all bias fit
        assert not any("dark" in note or "flat" in note for note in g.notes)
    # The 300 s darks come from the Ha session folder and serve the OIII 300 s lights too.
    assert all("Ha_300" in str(d.path) for d in _group(two_by_two, "M42-OIII-300s").darks)


def test_lights_are_sorted_by_time(two_by_two: Session) -> None:
    for g in two_by_two.groups:
        times = [f.time for f in g.lights]
        assert None not in times and times == sorted(times)  # type: ignore[type-var]


def test_simulator_truth_maps_are_unused_with_a_reason(two_by_two: Session) -> None:
    reasons = _unused(two_by_two)
    assert reasons["scene.fits"] == "cannot tell whether it is a light, dark, flat or bias"
    assert reasons["bias.fits"] == "cannot tell whether it is a light, dark, flat or bias"


def test_metadata_come_from_the_header(two_by_two: Session) -> None:
    light = _group(two_by_two, "M42-Ha-300s").lights[0]
    assert (light.found_by, light.exposure, light.gain, light.target) == (
        "header",
        300.0,
        100,
        "M42",
    )
    assert light.temperature == -10.0 and light.shape == _SHAPE


# --------------------------------------------------------------------------------------------
# Kinds: header, folder, file name


def test_imagetyp_beats_folder_name(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "a.fits", IMAGETYP="Light Frame", EXPTIME=60.0)
    _fits(tmp_path / "lights" / "b.fits", IMAGETYP="Dark Frame", EXPTIME=60.0)
    _fits(tmp_path / "darks" / "c.fits", IMAGETYP="LIGHT", EXPTIME=60.0)
    session = discover_session(tmp_path)
    (group,) = session.groups
    assert sorted(f.path.name for f in group.lights) == ["a.fits", "c.fits"]
    assert [d.path.name for d in group.darks] == ["b.fits"]
    assert {f.found_by for f in (*group.lights, *group.darks)} == {"header"}


def test_folder_spellings_decide_the_kind(tmp_path: Path) -> None:
    _fits(tmp_path / "Light" / "a.fits")
    _fits(tmp_path / "DARKS" / "b.fits")
    _fits(tmp_path / "Offsets" / "c.fits")
    _fits(tmp_path / "FLATS" / "d.fits")
    _fits(tmp_path / "FlatDarks" / "e.fits")
    _fits(tmp_path / "dark_flats" / "f.fits")
    _fits(tmp_path / "Biases" / "g.fits")
    _fits(tmp_path / "M42" / "lights" / "night1" / "h.fits")  # the nearest kind folder counts
    (group,) = discover_session(tmp_path).groups
    assert sorted(f.path.name for f in group.lights) == ["a.fits", "h.fits"]
    assert [f.path.name for f in group.darks] == ["b.fits"]
    assert sorted(f.path.name for f in group.bias) == ["c.fits", "g.fits"]
    assert [f.path.name for f in group.flats] == ["d.fits"]
    assert sorted(f.path.name for f in group.dark_flats) == ["e.fits", "f.fits"]
    assert {f.found_by for f in group.lights} == {"folder"}


_NAMED = {
    "M31_2023-10-01_LIGHT_Ha_300.00s_0001.fits": ("light", 300.0, "Ha", "M31", None),
    "Light_M31_300.0s_Bin1_Ha_gain100_20231001-220000_-10.0C_0001.fit": (
        "light",
        300.0,
        "Ha",
        "M31",
        100.0,
    ),
    "Light_NGC 7023_10.0s_IRCUT_20240904-203454.fit": ("light", 10.0, "IRCUT", "NGC 7023", None),
    "M31_Light_Ha_300_secs_2023-10-01T22-00-00_001.fits": ("light", 300.0, "Ha", "M31", None),
    "Dark_300.0s_gain100_-10.0C_0001.fits": ("dark", 300.0, None, None, 100.0),
}


@pytest.fixture(scope="module")
def named_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("named")
    for name in _NAMED:
        _fits(root / name)  # no header cards: everything comes from the name
    return discover_session(root)


@pytest.mark.parametrize("name", list(_NAMED))
def test_file_name_patterns_are_parsed(named_session: Session, name: str) -> None:
    found = _file(named_session, name)
    kind, exposure, filt, target, gain = _NAMED[name]
    assert found.found_by == "name"
    assert (found.kind, found.exposure, found.filter, found.target, found.gain) == (
        kind,
        exposure,
        filt,
        target,
        gain,
    )


def test_file_names_give_temperature_and_time(named_session: Session) -> None:
    asiair = _file(
        named_session, "Light_M31_300.0s_Bin1_Ha_gain100_20231001-220000_-10.0C_0001.fit"
    )
    assert asiair.temperature == -10.0
    assert asiair.time is not None and asiair.time.isoformat() == "2023-10-01T22:00:00"


def test_group_names_are_unique_and_folder_safe(named_session: Session) -> None:
    names = [g.name for g in named_session.groups]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    # N.I.N.A. and Ekos lights (gain unknown) share a group; ASIAIR's gain 100 makes another.
    assert sorted(names) == ["M31-Ha-300s", "M31-Ha-300s-gain100", "NGC_7023-IRCUT-10s"]
    assert len(_group(named_session, "M31-Ha-300s").lights) == 2
    # The SharpCap dark (gain 100) fits both M31 groups (unknown gain does not exclude it).
    assert [d.path.name for d in _group(named_session, "M31-Ha-300s-gain100").darks] == [
        "Dark_300.0s_gain100_-10.0C_0001.fits"
    ]


def test_group_name() -> None:
    assert group_name("M42", "Ha", 300.0) == "M42-Ha-300s"
    assert group_name("NGC 7023", "IRCUT", 10.0) == "NGC_7023-IRCUT-10s"
    assert group_name(None, None, None) == "lights"
    assert group_name("M 31/Andromeda?", None, 0.5) == "M_31_Andromeda-0.5s"
    assert group_name("..", None, None) == "lights"


def test_groups_differing_only_in_size_get_unique_names(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "a.fits", OBJECT="M42", EXPTIME=60.0)
    _fits(tmp_path / "lights" / "b.fits", shape=(24, 32), OBJECT="M42", EXPTIME=60.0)
    names = sorted(g.name for g in discover_session(tmp_path).groups)
    assert names == ["M42-60s-32x24", "M42-60s-64x48"]


# --------------------------------------------------------------------------------------------
# Beginners, bad files, skipped folders, errors


def test_beginner_folder_of_jpegs_is_one_group_of_lights(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    for i in range(3):
        write(rng.random((*_SHAPE, 3)).astype(np.float32), tmp_path / f"IMG_{i:04d}.jpg")
    session = discover_session(tmp_path)
    (group,) = session.groups
    assert group.name == "lights" and len(group.lights) == 3
    assert {f.shape for f in group.lights} == {(*_SHAPE, 3)}
    assert any("taken as lights" in note for note in group.notes)
    assert session.unused == ()


def test_unclassified_files_are_unused_when_lights_exist(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "a.fits")
    _fits(tmp_path / "IMG_0001.fits")
    session = discover_session(tmp_path)
    assert [f.path.name for f in session.groups[0].lights] == ["a.fits"]
    assert _unused(session) == {
        "IMG_0001.fits": "cannot tell whether it is a light, dark, flat or bias"
    }


def test_corrupt_and_truncated_files_are_unused_and_the_rest_found(tmp_path: Path) -> None:
    good = [_fits(tmp_path / "lights" / f"l{i}.fits") for i in range(2)]
    (tmp_path / "lights" / "garbage.fits").write_bytes(b"\x00\x01 not a fits file" * 20)
    cut = _fits(tmp_path / "lights" / "cut.fits")
    cut.write_bytes(cut.read_bytes()[:4000])
    session = discover_session(tmp_path)
    assert [f.path for f in session.groups[0].lights] == good
    reasons = _unused(session)
    assert reasons["garbage.fits"].startswith("unreadable: not a FITS file")
    assert reasons["cut.fits"].startswith("unreadable: FITS data are truncated")
    assert all("\n" not in r for r in reasons.values())


def test_output_folder_hidden_files_and_excluded_paths_are_skipped(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "a.fits")
    _fits(tmp_path / "skystack" / "lights" / "stack.fits")
    _fits(tmp_path / ".thumbs" / "lights" / "t.fits")
    _fits(tmp_path / "lights" / ".hidden.fits")
    _fits(tmp_path / "out" / "lights" / "o.fits")
    session = discover_session(tmp_path, exclude=[tmp_path / "out"])
    assert [f.path.name for f in session.groups[0].lights] == ["a.fits"]
    assert session.unused == ()


def test_missing_folder_raises_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingFileError, match=rf"^{re.escape(str(missing))}: no such session"):
        discover_session(missing)


def test_folder_without_lights_raises(tmp_path: Path) -> None:
    _fits(tmp_path / "darks" / "d.fits")
    with pytest.raises(MissingFileError, match=rf"^{re.escape(str(tmp_path))}: no light frames"):
        discover_session(tmp_path)


# --------------------------------------------------------------------------------------------
# Calibration matching


def test_dark_of_another_exposure_is_unused_with_the_reason(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "l.fits", EXPTIME=300.0)
    _fits(tmp_path / "darks" / "d300.fits", EXPTIME=300.0)
    _fits(tmp_path / "darks" / "d120.fits", EXPTIME=120.0)
    _fits(tmp_path / "darks" / "small.fits", shape=(24, 32), EXPTIME=300.0)
    session = discover_session(tmp_path)
    assert [d.path.name for d in session.groups[0].darks] == ["d300.fits"]
    reasons = _unused(session)
    assert reasons["d120.fits"] == "dark of 120 s matches no lights"
    assert reasons["small.fits"] == "dark of 300 s, 32x24: no lights of that size"


def test_darks_of_the_nearest_longer_exposure_are_used_with_a_note(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "l.fits", EXPTIME=300.0)
    _fits(tmp_path / "darks" / "d240.fits", EXPTIME=240.0)
    _fits(tmp_path / "darks" / "d360.fits", EXPTIME=360.0)
    _fits(tmp_path / "darks" / "d600.fits", EXPTIME=600.0)
    _fits(tmp_path / "bias" / "b.fits", EXPTIME=0.0)
    session = discover_session(tmp_path)
    (group,) = session.groups
    assert [d.exposure for d in group.darks] == [360.0]
    assert group.notes == (
        "darks of 360 s used for 300 s lights (scaled)",
        "no flats: not flat-fielded",
    )


def test_shorter_darks_are_used_when_no_longer_ones_exist(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "l.fits", EXPTIME=300.0)
    _fits(tmp_path / "darks" / "d240.fits", EXPTIME=240.0)
    (group,) = discover_session(tmp_path).groups
    assert [d.exposure for d in group.darks] == [240.0]
    assert "darks of 240 s used for 300 s lights (scaled)" in group.notes
    assert "no bias frames to scale the darks by exposure" in group.notes


def test_darks_within_two_percent_count_as_the_same_exposure(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "l.fits", EXPTIME=300.0)
    _fits(tmp_path / "darks" / "d.fits", EXPTIME=303.0)
    (group,) = discover_session(tmp_path).groups
    assert len(group.darks) == 1 and not any("darks" in n for n in group.notes)


def test_darks_of_the_closest_temperature_and_same_gain_are_chosen(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "l.fits", EXPTIME=60.0, GAIN=100, CCD_TEMP=-10.2)
    _fits(tmp_path / "darks" / "cold1.fits", EXPTIME=60.0, GAIN=100, CCD_TEMP=-10.0)
    _fits(tmp_path / "darks" / "cold2.fits", EXPTIME=60.0, GAIN=100, CCD_TEMP=-9.5)
    _fits(tmp_path / "darks" / "warm.fits", EXPTIME=60.0, GAIN=100, CCD_TEMP=-5.0)
    _fits(tmp_path / "darks" / "gain0.fits", EXPTIME=60.0, GAIN=0, CCD_TEMP=-10.0)
    _fits(tmp_path / "bias" / "b100.fits", GAIN=100)
    _fits(tmp_path / "bias" / "b0.fits", GAIN=0)
    session = discover_session(tmp_path)
    (group,) = session.groups
    assert sorted(d.path.name for d in group.darks) == ["cold1.fits", "cold2.fits"]
    assert [b.path.name for b in group.bias] == ["b100.fits"]
    assert set(_unused(session)) == {"warm.fits", "gain0.fits", "b0.fits"}


def test_darks_far_from_the_lights_temperature_get_a_note(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "l.fits", EXPTIME=60.0, CCD_TEMP=-10.0)
    _fits(tmp_path / "darks" / "d.fits", EXPTIME=60.0, CCD_TEMP=5.0)
    (group,) = discover_session(tmp_path).groups
    assert group.notes[0] == "darks at 5 C used for lights at -10 C"


def test_flats_and_dark_flats_are_matched(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "ha.fits", EXPTIME=60.0, FILTER="Ha")
    _fits(tmp_path / "lights" / "none.fits", EXPTIME=60.0)
    _fits(tmp_path / "lights" / "oiii.fits", EXPTIME=60.0, FILTER="OIII")
    _fits(tmp_path / "flats" / "f_ha.fits", EXPTIME=2.0, FILTER="HA")
    _fits(tmp_path / "flats" / "f_none.fits", EXPTIME=3.0)
    _fits(tmp_path / "darkflats" / "df2.fits", EXPTIME=2.0)
    _fits(tmp_path / "darkflats" / "df3.fits", EXPTIME=3.0)
    _fits(tmp_path / "darkflats" / "df9.fits", EXPTIME=9.0)
    session = discover_session(tmp_path)
    ha, none, oiii = (_group(session, n) for n in ("Ha-60s", "60s", "OIII-60s"))
    assert [f.path.name for f in ha.flats] == ["f_ha.fits"]
    assert [f.path.name for f in ha.dark_flats] == ["df2.fits"]
    assert [f.path.name for f in none.flats] == ["f_none.fits"]
    assert [f.path.name for f in none.dark_flats] == ["df3.fits"]
    assert oiii.flats == () and "no flats for filter OIII: not flat-fielded" in oiii.notes
    assert _unused(session) == {"df9.fits": "dark-flat of 9 s matches no lights"}


def test_flats_without_any_filter_serve_every_filter(tmp_path: Path) -> None:
    _fits(tmp_path / "lights" / "ha.fits", FILTER="Ha")
    _fits(tmp_path / "lights" / "l.fits", FILTER="L")
    _fits(tmp_path / "flats" / "f.fits")
    session = discover_session(tmp_path)
    assert all(len(g.flats) == 1 for g in session.groups) and len(session.groups) == 2


# --------------------------------------------------------------------------------------------
# Description


def test_describe_session_lines(tmp_path: Path) -> None:
    for i in range(3):
        _fits(
            tmp_path / "lights" / f"l{i}.fits", OBJECT="M42", FILTER="Ha", EXPTIME=300.0, GAIN=100
        )
    for i in range(2):
        _fits(tmp_path / "darks" / f"d{i}.fits", EXPTIME=300.0, GAIN=100)
        _fits(tmp_path / "flats" / f"f{i}.fits", EXPTIME=2.0, FILTER="Ha")
    _fits(tmp_path / "darks" / "d120.fits", EXPTIME=120.0, GAIN=100)
    lines = describe_session(discover_session(tmp_path))
    assert lines == [
        "M42-Ha-300s: 3 lights (target M42, filter Ha, 300 s, gain 100)",
        "  darks: 2 x 300 s; flats: 2 x 2 s (Ha); bias: none; dark-flats: none",
        "unused: darks/d120.fits: dark of 120 s matches no lights",
    ]


def test_header_only_shapes_agree_with_the_readers(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from skystack.io import read

    colour = rng.random((*_SHAPE, 3)).astype(np.float32)
    grey = colour[..., 0].copy()
    (tmp_path / "lights").mkdir()
    written = [
        write(colour, tmp_path / "lights" / "c.tif"),
        write(grey, tmp_path / "lights" / "g.tif"),
        write(colour, tmp_path / "lights" / "c.png"),
        write(grey, tmp_path / "lights" / "g.png"),
        write(grey, tmp_path / "lights" / "g.jpg"),
        write(colour, tmp_path / "lights" / "c.fits"),
    ]
    session = discover_session(tmp_path)
    shapes = {f.path.name: f.shape for g in session.groups for f in g.lights}
    assert shapes == {p.name: read(p).data.shape for p in written}


def test_set_temperature_and_symlinked_dark_library(tmp_path: Path) -> None:
    root = tmp_path / "night"
    _fits(root / "lights" / "l.fits", EXPTIME=60.0, SET_TEMP=-15.0)
    _fits(tmp_path / "library" / "d.fits", IMAGETYP="Dark Frame", EXPTIME=60.0)
    (root / "darks").symlink_to(tmp_path / "library", target_is_directory=True)
    (root / "lights" / "loop").symlink_to(root, target_is_directory=True)
    (group,) = discover_session(root).groups
    assert group.lights[0].temperature == -15.0
    assert [d.path.name for d in group.darks] == ["d.fits"]
