"""Benchmark of a slice change in the viewer (not a timed test).

Builds a synthetic 512 x 512 x 160 CT (0.98 mm pixels, 2 mm slices: an elliptic body with a
bone ring, lungs and 10 HU noise), five structures (body, PTV, three organs at risk), and a dose
cube on a 3 mm grid (a target dose plateau with a smooth fall-off over the body and two entrance
channels) with six isodose levels, shows them in a :class:`ViewerPanel` (axial view large,
coronal and sagittal small) in a 1440 x 900 window, then changes the axial slice again and
again, as the mouse wheel does, and times the full cycle per change:

``state.set_slice`` -> NumPy (window/level, dose wash, isodose lines, outlines) -> texture
uploads -> canvas instructions -> one rendered frame (``EventLoop.idle`` then ``glFinish``).

Parts: ``ct`` = window/level LUT + texture upload; ``dose`` = interpolated dose slice, wash,
upload and isodose lines; ``structures`` = outlines (cached per slice) and their Line
instructions; ``other`` = crosshair, slice label, readout and the property handlers; ``frame`` =
drawing the window (all three views) and glFinish. Two sweeps over the same slices: ``cold``
(outline cache empty: first visit of each slice) and ``warm`` (outlines cached).

Cases (each in its own process, the window size is fixed at start): ``panel`` = the whole
ViewerPanel in a 1440 x 900 window (axial view about 840 x 840 px); ``single`` = one axial
SliceView filling a 512 x 512 window (one CT pixel per screen pixel).

Run: ``python bench/bench_slice_view.py [--case panel|single] [--changes N]`` (both cases when
--case is omitted). Uses SDL's offscreen driver (Mesa llvmpipe) unless $DISPLAY is set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHAPE = (160, 512, 512)
SPACING_MM = (2.0, 0.98, 0.98)
DOSE_SPACING_MM = 3.0
ISODOSE_LEVELS_GY = (57.0, 54.0, 48.0, 36.0, 24.0, 12.0)
PARTS = ("ct", "dose", "structures", "other", "frame")


WINDOW_PX = {"panel": (1440, 900), "single": (512, 512)}


def _configure_kivy(window_px: tuple[int, int]) -> None:
    home = Path(tempfile.mkdtemp(prefix="ionplan-bench-kivy-"))
    os.environ.update({
        "KIVY_HOME": str(home), "KIVY_NO_ARGS": "1", "KIVY_USE_DEFAULTCONFIG": "1",
        "KIVY_NO_FILELOG": "1", "KIVY_NO_CONSOLELOG": "1", "KIVY_METRICS_DENSITY": "1",
        "KIVY_LOG_MODE": "PYTHON",
    })
    if not os.environ.get("DISPLAY"):
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    from kivy.config import Config

    Config.set("graphics", "width", str(window_px[0]))
    Config.set("graphics", "height", str(window_px[1]))
    Config.set("graphics", "maxfps", "0")
    for option in list(Config.options("input")):
        Config.remove_option("input", option)


def _phantom():
    from planning.dose_grid import DoseGrid
    from planning.patient import CtVolume, PatientStudy, RoiMask

    rng = np.random.default_rng(7)
    nz, ny, nx = SHAPE
    sz, sy, sx = SPACING_MM
    origin = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2)
    y = origin[1] + sy * np.arange(ny)
    x = origin[0] + sx * np.arange(nx)
    z = origin[2] + sz * np.arange(nz)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    r_body = (xx / 200.0) ** 2 + (yy / 140.0) ** 2
    section = np.where(r_body <= 1.0, 40.0, -1000.0)
    section[(r_body > 0.85) & (r_body <= 0.93)] = 900.0
    lungs = ((np.abs(xx) - 85.0) / 60.0) ** 2 + (yy / 80.0) ** 2 <= 1.0
    section[lungs] = -750.0
    hu = np.empty(SHAPE, np.int16)
    for k in range(nz):
        hu[k] = np.rint(section + rng.normal(0.0, 10.0, section.shape)).astype(np.int16)
    zz3 = z[:, None, None]
    body = np.broadcast_to(r_body <= 1.0, SHAPE)

    def ball(cx: float, cy: float, cz: float, r: float) -> np.ndarray:
        return ((xx - cx) ** 2 + (yy - cy) ** 2)[None] + (zz3 - cz) ** 2 <= r * r

    masks = {
        "BODY": RoiMask.from_dense(np.ascontiguousarray(body)),
        "PTV": RoiMask.from_dense(ball(10.0, 20.0, 0.0, 35.0)),
        "SPINAL_CORD": RoiMask.from_dense(np.broadcast_to(
            ((xx / 8.0) ** 2 + ((yy - 95.0) / 8.0) ** 2 <= 1.0), SHAPE).copy()),
        "LUNG_L": RoiMask.from_dense(np.broadcast_to(lungs & (xx > 0), SHAPE).copy()
                                     & (np.abs(zz3) < 120)),
        "HEART": RoiMask.from_dense(ball(-40.0, 10.0, -30.0, 40.0)),
    }
    study = PatientStudy("Bench^Viewer", "BENCH", "", "", "1.2", "1", "", "", "", "")
    ct = CtVolume(hu=hu, spacing_mm=SPACING_MM, origin_mm=origin, patient_position="HFS",
                  image_orientation_patient=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                  frame_of_reference_uid="1.2.3", series_instance_uid="1.2.4",
                  sop_instance_uids=tuple(f"1.2.5.{k}" for k in range(nz)), study=study)
    grid = DoseGrid.covering(DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm), DOSE_SPACING_MM)
    gz = grid.origin_mm[2] + DOSE_SPACING_MM * np.arange(grid.shape[0])
    gy = grid.origin_mm[1] + DOSE_SPACING_MM * np.arange(grid.shape[1])
    gx = grid.origin_mm[0] + DOSE_SPACING_MM * np.arange(grid.shape[2])
    dz, dy, dx = np.meshgrid(gz, gy, gx, indexing="ij")
    r = np.sqrt((dx - 10.0) ** 2 + (dy - 20.0) ** 2 + dz**2)
    dose = 60.0 / (1.0 + np.exp((r - 38.0) / 4.0))
    for sign in (-1.0, 1.0):  # two lateral entrance channels
        channel = np.exp(-0.5 * (((dy - 20.0) ** 2 + dz**2) / 25.0**2))
        dose += 18.0 * channel * (sign * (dx - 10.0) > 0) * (r > 30.0)
    dose *= ((dx / 200.0) ** 2 + (dy / 140.0) ** 2 <= 1.0)
    return ct, masks, grid, dose.astype(np.float32)


def _percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=120,
                        help="slice changes per sweep (default 120)")
    parser.add_argument("--case", choices=tuple(WINDOW_PX),
                        help="panel (1440 x 900) or single (512 x 512); both when omitted")
    args = parser.parse_args()
    if args.case is None:
        for case in WINDOW_PX:
            subprocess.run([sys.executable, __file__, "--case", case, "--changes",
                            str(args.changes)], check=True)
        return
    _configure_kivy(WINDOW_PX[args.case])
    from kivy.base import EventLoop, runTouchApp
    from kivy.core.window import Window
    from kivy.graphics.opengl import glFinish

    from app.viewer_state import DoseOverlay, StructureOverlay, ViewerState
    from app.widgets.slice_view import SliceView
    from app.widgets.viewer_panel import ViewerPanel

    t = time.perf_counter()
    ct, masks, grid, dose = _phantom()
    build_s = time.perf_counter() - t
    colours = {"BODY": (0, 200, 0), "PTV": (255, 0, 128), "SPINAL_CORD": (255, 255, 0),
               "LUNG_L": (0, 160, 255), "HEART": (255, 120, 0)}
    state = ViewerState()
    state.set_ct(ct)
    state.set_structures([StructureOverlay(n, colours[n], m) for n, m in masks.items()])
    state.set_dose(DoseOverlay(dose=dose, grid=grid, unit="Gy(RBE)", vmin=0.0, vmax=60.0,
                               threshold=3.0, opacity=0.45, isodose_levels=ISODOSE_LEVELS_GY,
                               label="RBE-weighted dose"))
    if args.case == "panel":
        panel = ViewerPanel(state)
        root = panel
        views = list(panel.views)
    else:
        root = SliceView(state, "axial")
        views = [root]
    runTouchApp(root, embedded=True)
    Window.size = WINDOW_PX[args.case]
    for _ in range(5):
        EventLoop.idle()
    view = views[0]

    timings: dict[str, float] = {}

    def timed(name: str, func: Callable[[], None]) -> Callable[[], None]:
        def wrapper() -> None:
            start = time.perf_counter()
            func()
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    view._draw_ct = timed("ct", view._draw_ct)
    view._draw_dose = timed("dose", view._draw_dose)
    view._draw_structures = timed("structures", view._draw_structures)

    nz = SHAPE[0]
    first = nz // 2 - args.changes // 2
    indices = [first + n for n in range(args.changes)]
    lines_drawn: list[int] = []
    results: dict[str, dict[str, list[float]]] = {}
    for sweep in ("cold", "warm"):
        if sweep == "cold":
            view._outlines.clear()
        parts: dict[str, list[float]] = {p: [] for p in (*PARTS, "total")}
        state.set_slice("axial", indices[0] - 1)
        EventLoop.idle()
        glFinish()
        for index in indices:
            timings.clear()
            for v in views:
                v.refresh_seconds = 0.0
            t0 = time.perf_counter()
            state.set_slice("axial", index)
            t1 = time.perf_counter()
            EventLoop.idle()  # runs the view's refresh trigger, then draws the frame
            glFinish()
            t2 = time.perf_counter()
            refresh = sum(v.refresh_seconds for v in views)
            drawn = sum(timings.values())
            parts["ct"].append(timings.get("ct", 0.0))
            parts["dose"].append(timings.get("dose", 0.0))
            parts["structures"].append(timings.get("structures", 0.0))
            parts["other"].append((t1 - t0) + max(refresh - drawn, 0.0))
            parts["frame"].append(max((t2 - t1) - refresh, 0.0))
            parts["total"].append(t2 - t0)
            if sweep == "warm":
                lines_drawn.append(len(view._isodose_group.children)
                                   + len(view._structure_group.children))
        results[sweep] = parts

    gl_renderer = _gl_renderer()
    load = os.getloadavg()[0]
    print(f"case {args.case}: window {WINDOW_PX[args.case][0]}x{WINDOW_PX[args.case][1]}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"synthetic data built in {build_s:.1f} s; CT {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]}, "
          f"dose grid {grid.shape[2]}x{grid.shape[1]}x{grid.shape[0]} at {DOSE_SPACING_MM} mm, "
          f"{len(masks)} structures, {len(ISODOSE_LEVELS_GY)} isodose levels; "
          f"axial view {int(view.width)}x{int(view.height)} px; renderer: {gl_renderer}")
    print(f"{args.changes} axial slice changes per sweep; canvas instructions per slice in the "
          f"line groups: median {int(np.median(lines_drawn))}")
    header = "| sweep | stat | " + " | ".join(PARTS) + " | total ms |"
    print(header)
    print("|" + "---|" * (len(PARTS) + 3))
    for sweep, parts in results.items():
        for stat, q in (("median", 50.0), ("p95", 95.0)):
            cells = " | ".join(f"{_percentile_ms(parts[p], q):.1f}" for p in PARTS)
            print(f"| {sweep} | {stat} | {cells} | {_percentile_ms(parts['total'], q):.1f} |")


def _gl_renderer() -> str:
    from kivy.graphics.opengl import GL_RENDERER, glGetString

    value = glGetString(GL_RENDERER)
    return value.decode() if isinstance(value, bytes) else str(value)


if __name__ == "__main__":
    main()
