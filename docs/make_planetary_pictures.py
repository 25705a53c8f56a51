"""Make the picture of docs/planetary.md from the real lunar video in the sample data.

``skystack planetary`` runs with its defaults on ``../shared/data/pss_moon_avi/short_video.avi``
(101 lossy MPEG-4 frames of 1280x960); the picture shows one crop of a single frame, of the
stack and of the sharpened stack, each with the same percentile display stretch.

Usage: python docs/make_planetary_pictures.py [--data ../shared/data]
       [--work /tmp/planetary-pictures]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def display(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [0.5, 99.5])
    return (np.clip((image - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    cv2.putText(out, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def main() -> int:
    from skystack.io import read
    from skystack.io.video import VideoReader

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/planetary-pictures"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.data / "pss_moon_avi" / "short_video.avi"
    out = args.work / "moon.tif"
    binary = Path(sys.executable).with_name("skystack")
    subprocess.run([str(binary), "planetary", str(video), "-o", str(out), "--overwrite"],
                   check=True)  # fmt: skip
    stack = read(out).data
    sharp = read(out.with_name("moon_sharp.tif")).data
    x0, y0 = json.loads(out.with_suffix(".json").read_text())["roi"][:2]
    with VideoReader(video) as reader:
        frame = reader[len(reader) // 2].data
    frame = frame.mean(axis=2) if frame.ndim == 3 else frame
    frame = frame[y0 : y0 + stack.shape[0], x0 : x0 + stack.shape[1]]
    crop = (slice(280, 620), slice(460, 940))
    panels = [labelled(display(a[crop]), t) for a, t in
              ((frame, "one frame"), (stack, "stack, best 25%"), (sharp, "sharpened"))]  # fmt: skip
    path = REPO / "docs" / "images" / "planetary_moon.jpg"
    cv2.imwrite(str(path), np.hstack(panels), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
