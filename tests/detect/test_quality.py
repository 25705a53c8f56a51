"""Frame quality, scores, selection and weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skystack.detect import (
    FrameQuality,
    find_stars,
    frame_weights,
    measure_quality,
    parse_percent,
    quality_scores,
    select_frames,
)
from skystack.sim import SessionConfig, make_session, render_light


def _q(n=100, fwhm=3.0, ecc=0.2, background=0.1, noise=0.01):
    return FrameQuality(n_stars=n, fwhm=fwhm, eccentricity=ecc, background=background, noise=noise)


@pytest.fixture(scope="module")
def cloudy_session():
    config = SessionConfig(
        extended="none", n_lights=4, cloudy_lights=(3,), fwhm_px=(2.8, 2.8), sky_variation=0.0
    )
    session = make_session(config, seed=11)
    frames = [render_light(session, i).astype(np.float32) / 65535.0 for i in range(4)]
    return session, frames


def test_measure_quality_of_simulated_lights(cloudy_session):
    session, frames = cloudy_session
    qualities = [measure_quality(frame) for frame in frames]
    for plan, quality in zip(session.lights, qualities, strict=True):
        assert quality.fwhm == pytest.approx(plan.fwhm_pixel_px, rel=0.1)
        assert quality.noise > 0 and quality.background > 0
        assert 0 <= quality.eccentricity < 0.5
    clear = qualities[:3]
    cloudy = qualities[3]
    assert cloudy.n_stars < 0.8 * min(q.n_stars for q in clear)
    assert cloudy.background > max(q.background for q in clear)
    scores = quality_scores(qualities)
    assert scores[3] < scores[:3].min()
    assert np.all((scores >= 0) & (scores <= 1)) and scores.max() > 0.9
    # precomputed stars give the same answer
    stars = find_stars(frames[0])
    assert measure_quality(frames[0], stars=stars) == qualities[0]
    with pytest.raises(TypeError, match="give one"):
        measure_quality(frames[0], stars=stars, threshold=3.0)


def test_to_dict_is_json_ready():
    d = _q(n=0, fwhm=float("nan")).to_dict()
    assert d == {"n_stars": 0, "fwhm": None, "eccentricity": 0.2, "background": 0.1, "noise": 0.01}
    assert isinstance(d["n_stars"], int)


def test_larger_fwhm_lowers_the_score():
    scores = quality_scores([_q(fwhm=2.5), _q(fwhm=3.0), _q(fwhm=5.0)])
    assert scores[0] == pytest.approx(1.0)
    assert scores[0] > scores[1] > scores[2] > 0
    assert scores[2] == pytest.approx((2.5 / 5.0) ** 0.4)


def test_invalid_frames_score_zero():
    scores = quality_scores([_q(), _q(n=0), _q(fwhm=float("nan")), _q(noise=float("nan"))])
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == 0.0 and scores[2] == 0.0
    assert scores[3] == pytest.approx(1.0)  # missing noise counts as neutral
    assert quality_scores([]).shape == (0,)
    assert quality_scores([_q(n=0)]).tolist() == [0.0]


def test_select_frames_by_percent_and_thresholds():
    qualities = [_q(fwhm=f) for f in (3.0, 2.0, 4.0, 2.5, 6.0)]
    assert select_frames(qualities).all()
    assert select_frames(qualities, percent=40).tolist() == [False, True, False, True, False]
    # ceil(5 * 0.5) = 3 frames; at least one frame however small the percent
    assert select_frames(qualities, percent="50%").sum() == 3
    assert select_frames(qualities, percent=1).tolist() == [False, True, False, False, False]
    assert select_frames(qualities, max_fwhm=3.0).tolist() == [True, True, False, True, False]
    mixed = [_q(n=5), _q(n=50, ecc=0.6), _q(n=80, fwhm=float("nan"))]
    assert select_frames(mixed, min_stars=10).tolist() == [False, True, True]
    assert select_frames(mixed, max_eccentricity=0.5).tolist() == [True, False, True]
    assert select_frames(mixed, max_fwhm=10).tolist() == [True, True, False]
    assert select_frames([]).shape == (0,)
    with pytest.raises(ValueError, match="got 0"):
        select_frames(qualities, percent=0)


def test_frame_weights_each_method():
    qualities = [_q(n=100, fwhm=2.0, noise=0.01), _q(n=300, fwhm=4.0, noise=0.02)]
    noise = frame_weights(qualities, method="noise")
    assert noise.mean() == pytest.approx(1.0)
    assert noise[0] / noise[1] == pytest.approx(4.0)
    stars = frame_weights(qualities, method="stars")
    assert stars.tolist() == pytest.approx([0.5, 1.5])
    fwhm = frame_weights(qualities, method="fwhm")
    assert fwhm[0] / fwhm[1] == pytest.approx(4.0) and fwhm.mean() == pytest.approx(1.0)
    exposure = frame_weights(qualities, method="exposure", exposures=[60.0, 180.0])
    assert exposure.tolist() == pytest.approx([0.5, 1.5])
    assert frame_weights(qualities, method="none").tolist() == [1.0, 1.0]


def test_frame_weights_zero_for_invalid_and_normalised_over_valid():
    qualities = [_q(noise=0.01), _q(noise=float("nan")), _q(noise=0.01), _q(n=0, noise=0.0)]
    weights = frame_weights(qualities, method="noise")
    assert weights.tolist() == [1.0, 0.0, 1.0, 0.0]
    stars = frame_weights([_q(n=0), _q(n=10)], method="stars")
    assert stars.tolist() == [0.0, 1.0]
    fwhm = frame_weights([_q(fwhm=float("nan")), _q(fwhm=2.0)], method="fwhm")
    assert fwhm.tolist() == [0.0, 1.0]
    exposure = frame_weights([_q(), _q()], method="exposure", exposures=[-1.0, 30.0])
    assert exposure.tolist() == [0.0, 1.0]


def test_frame_weights_errors():
    qualities = [_q(), _q()]
    with pytest.raises(ValueError, match="unknown weighting method 'snr'"):
        frame_weights(qualities, method="snr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the exposures"):
        frame_weights(qualities, method="exposure")
    with pytest.raises(ValueError, match="1 exposures given for 2 frames"):
        frame_weights(qualities, method="exposure", exposures=[1.0])
    with pytest.raises(
        ValueError, match="no frame has a valid measurement for weighting by 'fwhm'"
    ):
        frame_weights([_q(fwhm=math.nan)], method="fwhm")


@pytest.mark.parametrize(
    ("text", "value"),
    [("80", 80.0), ("80%", 80.0), (" 12.5 % ", 12.5), (80.0, 80.0), (100, 100.0)],
)
def test_parse_percent_accepts(text, value):
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["abc", "0", "-5%", "101", "nan", "", "%", True])
def test_parse_percent_rejects_naming_the_value(text):
    with pytest.raises(ValueError, match=r"percent must be a number in \(0, 100\].*" + repr(text)):
        parse_percent(text)
