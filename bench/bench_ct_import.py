"""Benchmark of the CT series import (not a timed test).

Writes a synthetic 512 x 512 x 300 CT series (0.98 mm pixels, 1 mm slices; an elliptic body of
soft tissue with a bone ring, 10 HU noise) to a temporary folder in each transfer syntax
the environment can encode, then imports it with :func:`planning.dicom.load_ct_series` in a fresh
subprocess and reports the wall time, the peak resident memory increase (peak minus the resident
size just before the import), and the size of the resulting HU volume (noise is in air too).
Compressed series reuse 8 distinct encoded images cyclically (encoding 300 images in pure Python
would dominate the run; decoding is what is measured). The files are in the page cache when they
are read (they were just written).

Also times the demo patient: building it in memory and writing it as DICOM.

Run: ``python bench/bench_ct_import.py [--slices N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydicom.pixels import get_decoder, get_encoder  # noqa: E402
from pydicom.uid import (  # noqa: E402
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
)

from tests.dicom_factory import SeriesSpec, ct_slice, encode_pixels, save  # noqa: E402

ROWS = COLUMNS = 512
DISTINCT_IMAGES = 8


def _images(rng: np.random.Generator) -> list[np.ndarray]:
    """Distinct CT-like images in HU, (512, 512) float."""
    j, i = np.mgrid[0:ROWS, 0:COLUMNS]
    x = (i - 255.5) * 0.98
    y = (j - 255.5) * 0.98
    r = (x / 200.0) ** 2 + (y / 140.0) ** 2
    out = []
    for _ in range(DISTINCT_IMAGES):
        hu = np.where(r <= 1.0, 40.0, -1000.0)
        hu[(r > 0.8) & (r <= 0.9)] = 900.0
        out.append(hu + rng.normal(0.0, 10.0, hu.shape))
    return out


def write_series(folder: Path, syntax: str, n_slices: int) -> int:
    """Write the benchmark series; returns its total size in bytes."""
    rng = np.random.default_rng(0)
    images = _images(rng)
    spec = SeriesSpec(
        rows=ROWS,
        columns=COLUMNS,
        n_slices=n_slices,
        pixel_spacing=(0.98, 0.98),
        slice_spacing=1.0,
        first_position=(-250.0, -250.0, -150.0),
        tag=f"bench-{syntax}",
        transfer_syntax=ExplicitVRLittleEndian,
    )
    encoded: list[object] = []
    total = 0
    for k in range(n_slices):
        n = k % DISTINCT_IMAGES
        ds = ct_slice(spec, k, images[n])
        if syntax != ExplicitVRLittleEndian:
            if len(encoded) <= n:
                pixels = np.frombuffer(ds.PixelData, dtype="<u2").reshape(ROWS, COLUMNS)
                encode_pixels(ds, pixels, syntax)
                encoded.append((ds.file_meta.TransferSyntaxUID, ds.PixelData))
            else:
                ts, data = encoded[n]  # type: ignore[misc]
                ds.file_meta.TransferSyntaxUID = ts
                ds.PixelData = data
                ds["PixelData"].VR = "OB"
        path = save(ds, folder / f"IM{k:05d}")
        total += path.stat().st_size
    return total


def _current_rss_kb() -> int:
    """Resident set size now, in KiB (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * resource.getpagesize() // 1024


def _measure_child(folder: str) -> None:
    from planning.dicom import load_ct_series

    before_kb = _current_rss_kb()
    start = time.perf_counter()
    ct = load_ct_series(folder)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_increase_mb": (peak_kb - before_kb) / 1024.0,
                "volume_mb": ct.hu.nbytes / 2**20,
                "shape": list(ct.shape),
                "dtype": str(ct.hu.dtype),
            }
        )
    )


def measure(folder: Path) -> dict[str, object]:
    """Import ``folder`` in a fresh interpreter; return its measurements."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(folder)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _demo_timings(folder: Path) -> tuple[float, float]:
    from planning.dicom import load_demo_patient, write_demo_patient

    start = time.perf_counter()
    load_demo_patient()
    in_memory = time.perf_counter() - start
    start = time.perf_counter()
    write_demo_patient(folder)
    return in_memory, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="write the series here and keep them")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _measure_child(args.child)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="ionplan-bench-"))
    syntaxes = [ExplicitVRLittleEndian, RLELossless, JPEGLosslessSV1, JPEG2000Lossless]
    print(f"CT import, {ROWS} x {COLUMNS} x {args.slices}, files in the page cache")
    print(
        f"{'transfer syntax':<34} {'files MB':>9} {'load s':>8} {'peak RSS +MB':>13} "
        f"{'volume MB':>10}  dtype"
    )
    try:
        for syntax in syntaxes:
            ts = UID(syntax)
            can_encode = (
                ts == JPEGLosslessSV1 or not ts.is_compressed or get_encoder(ts).is_available
            )
            if ts.is_compressed and not (get_decoder(ts).is_available and can_encode):
                print(f"{ts.name[:34]:<34} skipped: no encoder or decoder plugin")
                continue
            folder = root / ts.name.split(" ")[0].replace(",", "")
            size = write_series(folder, ts, args.slices)
            result = measure(folder)
            print(
                f"{ts.name[:34]:<34} {size / 2**20:>9.1f} {result['seconds']:>8.2f} "
                f"{result['peak_rss_increase_mb']:>13.0f} {result['volume_mb']:>10.0f}  "
                f"{result['dtype']}"
            )
            if not args.keep:
                shutil.rmtree(folder)
        in_memory, write = _demo_timings(root / "demo")
        print(
            f"demo patient: load_demo_patient {in_memory:.2f} s, write_demo_patient {write:.2f} s"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
