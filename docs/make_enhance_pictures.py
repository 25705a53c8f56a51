"""Make the before/after pictures of docs/enhance.md from the real sample data.

NGC 7023: the six Seestar S50 frames of ``../shared/data/seestar_s50_ngc7023`` are stacked with
``skystack stack`` (defaults); "before" is that stack with the standard display stretch
(``skystack convert``, what any viewer shows), "after" is ``skystack enhance`` with no options.
Hubble Deep Field: the JPEG as it is, and ``skystack enhance`` with no options.

Usage: python docs/make_enhance_pictures.py [--data ../shared/data] [--work /tmp/enhance-pictures]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"


def skystack(*args: str) -> None:
    binary = Path(sys.executable).with_name("skystack")
    subprocess.run([str(binary), *args, "--overwrite"], check=True)


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (12, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 5, cv2.LINE_AA)
    cv2.putText(out, text, (12, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def side_by_side(before: np.ndarray, after: np.ndarray, path: Path, width: int) -> None:
    scale = width / (2 * before.shape[1])
    size = (round(before.shape[1] * scale), round(before.shape[0] * scale))
    pair = [cv2.resize(img, size, interpolation=cv2.INTER_AREA) for img in (before, after)]
    picture = np.hstack([labelled(pair[0], "before"), labelled(pair[1], "skystack enhance")])
    cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/enhance-pictures"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    frames = sorted((args.data / "seestar_s50_ngc7023").glob("*.fit"))
    stack = work / "ngc7023.fits"
    skystack("stack", *map(str, frames), "-o", str(stack))
    skystack("convert", str(stack), "-o", str(work / "ngc7023_before.jpg"))
    skystack("enhance", str(stack), "-o", str(work / "ngc7023.tif"),
             "--jpeg", str(work / "ngc7023_after.jpg"))  # fmt: skip
    before = cv2.imread(str(work / "ngc7023_before.jpg"))
    after = cv2.imread(str(work / "ngc7023_after.jpg"))
    side_by_side(before, after, IMAGES / "enhance_ngc7023.jpg", 1200)
    # The nebula's core at full resolution (the bright star HD 200775 and its reflection).
    crop = (slice(760, 1180), slice(330, 810))
    side_by_side(before[crop], after[crop], IMAGES / "enhance_ngc7023_core.jpg", 960)

    hdf = args.data / "skimage_moon_hdf" / "hubble_deep_field.jpg"
    skystack("enhance", str(hdf), "-o", str(work / "hdf.tif"), "--jpeg", str(work / "hdf.jpg"))
    side_by_side(cv2.imread(str(hdf)), cv2.imread(str(work / "hdf.jpg")),
                 IMAGES / "enhance_hdf.jpg", 1200)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
