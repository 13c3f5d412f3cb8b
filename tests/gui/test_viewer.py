"""The slice viewer in a real window: wheel, keys, slider, click, zoom, window/level, presets,
structure toggles, dose wash, aspect ratio, hover readout, PNG export.

The phantom: a 64 x 128 x 128 CT with anisotropic voxels (2.5 x 1.25 x 1.0 mm), a water
ellipse body in air, a bone sphere (1000 HU) of radius 15 mm, a lung block (-700 HU) and a
ramp insert whose HU is 2 x column index (so a readout of the wrong column shows); a dose
cube on a 3 mm grid: a Gaussian of 60 Gy(RBE) peak centred on the sphere.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from planning.dose_grid import DoseGrid
from planning.patient import CtVolume, PatientStudy, RoiMask

SPACING_MM = (2.5, 1.25, 1.0)  # (sz, sy, sx)
ORIGIN_MM = (-64.0, -80.0, -80.0)  # (x, y, z) LPS of voxel (0, 0, 0)
SHAPE = (64, 128, 128)
SPHERE_LPS = (10.0, -10.0, 0.0)  # bone sphere centre, on the voxel grid
SPHERE_RADIUS_MM = 15.0
PTV_RGB = (255, 0, 128)
BODY_RGB = (0, 200, 0)
DOSE_PEAK_GY = 60.0
DOSE_SIGMA_MM = 12.0


def _grid_mm() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nz, ny, nx = SHAPE
    sz, sy, sx = SPACING_MM
    z = ORIGIN_MM[2] + sz * np.arange(nz)
    y = ORIGIN_MM[1] + sy * np.arange(ny)
    x = ORIGIN_MM[0] + sx * np.arange(nx)
    return np.meshgrid(z, y, x, indexing="ij")


def make_phantom() -> tuple[CtVolume, dict[str, RoiMask]]:
    zz, yy, xx = _grid_mm()
    body = (xx / 58.0) ** 2 + (yy / 70.0) ** 2 <= 1.0
    hu = np.full(SHAPE, -1000, dtype=np.int16)
    hu[body] = 0
    lung = body & (xx < -20) & (xx > -50) & (yy > -30) & (yy < 20)
    hu[lung] = -700
    ramp = body & (yy > 35) & (yy < 55)
    cols = np.broadcast_to(np.arange(SHAPE[2]), SHAPE)
    hu[ramp] = (2 * cols[ramp]).astype(np.int16)
    cx, cy, cz = SPHERE_LPS
    sphere = (xx - cx) ** 2 + (yy - cy) ** 2 + (zz - cz) ** 2 <= SPHERE_RADIUS_MM**2
    hu[sphere] = 1000
    study = PatientStudy("Phantom^Viewer", "VIEW1", "", "", "1.2.3", "1", "", "", "", "")
    ct = CtVolume(
        hu=hu, spacing_mm=SPACING_MM, origin_mm=ORIGIN_MM, patient_position="HFS",
        image_orientation_patient=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        frame_of_reference_uid="1.2.3.4", series_instance_uid="1.2.3.5",
        sop_instance_uids=tuple(f"1.2.3.6.{k}" for k in range(SHAPE[0])), study=study,
    )
    return ct, {"BODY": RoiMask.from_dense(body), "PTV": RoiMask.from_dense(sphere)}


def analytic_dose_gy(point_lps: tuple[float, float, float]) -> float:
    r2 = sum((p - c) ** 2 for p, c in zip(point_lps, SPHERE_LPS, strict=True))
    return DOSE_PEAK_GY * math.exp(-0.5 * r2 / DOSE_SIGMA_MM**2)


def make_dose(unit: str = "Gy(RBE)"):
    from app.viewer_state import DoseOverlay

    grid = DoseGrid(shape=(54, 54, 44), spacing_mm=(3.0, 3.0, 3.0),
                    origin_mm=(-64.5, -80.5, -80.0))
    nz, ny, nx = grid.shape
    z = grid.origin_mm[2] + 3.0 * np.arange(nz)
    y = grid.origin_mm[1] + 3.0 * np.arange(ny)
    x = grid.origin_mm[0] + 3.0 * np.arange(nx)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    cx, cy, cz = SPHERE_LPS
    r2 = (xx - cx) ** 2 + (yy - cy) ** 2 + (zz - cz) ** 2
    dose = (DOSE_PEAK_GY * np.exp(-0.5 * r2 / DOSE_SIGMA_MM**2)).astype(np.float32)
    return DoseOverlay(dose=dose, grid=grid, unit=unit, vmin=0.0, vmax=DOSE_PEAK_GY,
                       threshold=6.0, opacity=0.5, isodose_levels=(57.0, 54.0, 48.0, 30.0),
                       label="RBE-weighted dose")


@pytest.fixture
def viewer(gui):
    """The running app whose root is a ViewerPanel with the phantom (structures, no dose)."""
    from kivy.app import App

    from app.viewer_state import StructureOverlay, ViewerState
    from app.widgets.viewer_panel import ViewerPanel

    ct, masks = make_phantom()
    state = ViewerState()
    state.set_ct(ct)
    state.set_structures([
        StructureOverlay("BODY", BODY_RGB, masks["BODY"]),
        StructureOverlay("PTV", PTV_RGB, masks["PTV"]),
    ])
    # Crosshair through the sphere centre.
    k, j, i = (round(v) for v in _voxel_of(ct, SPHERE_LPS))
    state.set_cursor(k, j, i)

    class ViewerApp(App):
        def build(self):
            return ViewerPanel(state)

    app = gui.start(ViewerApp())
    gui.frames(3)
    return gui, app.root, state


def _voxel_of(ct: CtVolume, point_lps: tuple[float, float, float]) -> tuple[float, float, float]:
    from app.rendering import lps_to_voxel

    return lps_to_voxel(ct, point_lps)


def _window_xy(view, point_lps: tuple[float, float, float]) -> tuple[float, float]:
    """Window px of an LPS point as the view maps it (projected onto its plane)."""
    from app.rendering import lps_to_plane

    (u, v), = lps_to_plane(point_lps, view.orientation)
    return view.to_window(*view.plane_to_screen(float(u), float(v)))


def _colour_count(rgba: np.ndarray, view, colour: tuple[int, int, int]) -> int:
    """Pixels of exactly ``colour`` inside a view's rectangle of a window screenshot."""
    height = rgba.shape[0]
    x0, y0 = (int(v) for v in view.to_window(view.x, view.y))
    x1, y1 = x0 + int(view.width), y0 + int(view.height)
    region = rgba[height - y1 : height - y0, x0:x1, :3]
    return int(np.count_nonzero(np.all(region == np.asarray(colour, np.uint8), axis=-1)))


def test_wheel_steps_the_slice_under_the_mouse(viewer) -> None:
    gui, panel, state = viewer
    k0, j0, i0 = state.cursor_ijk
    gui.scroll(panel.axial, "up")
    assert panel.axial.slice_index == k0 + 1
    assert list(state.cursor_ijk) == [k0 + 1, j0, i0]
    gui.scroll(panel.axial, "down", clicks=3)
    assert panel.axial.slice_index == k0 - 2
    gui.scroll(panel.sagittal, "up", clicks=2)
    assert panel.sagittal.slice_index == i0 + 2
    assert panel.axial.slice_index == k0 - 2 and panel.coronal.slice_index == j0
    assert panel.sliders["axial"].value == k0 - 2


def test_wheel_stops_at_the_last_slice(viewer) -> None:
    gui, panel, state = viewer
    state.set_slice("axial", SHAPE[0] - 2)
    gui.scroll(panel.axial, "up", clicks=4)
    assert panel.axial.slice_index == SHAPE[0] - 1


def test_arrow_and_page_keys_step_the_view_under_the_mouse(viewer) -> None:
    from app.widgets.slice_view import PAGE_STEP

    gui, panel, state = viewer
    k0, j0, _ = state.cursor_ijk
    gui.move(panel.coronal)
    gui.key("up")
    assert panel.coronal.slice_index == j0 + 1
    gui.key("pagedown")
    assert panel.coronal.slice_index == j0 + 1 - PAGE_STEP
    assert panel.axial.slice_index == k0  # only the view under the mouse moves
    gui.move(panel.axial)
    gui.key("down")
    assert panel.axial.slice_index == k0 - 1
    assert panel.coronal.slice_index == j0 + 1 - PAGE_STEP


def test_slider_changes_the_slice(viewer) -> None:
    gui, panel, state = viewer
    slider = panel.sliders["sagittal"]
    assert slider.max == SHAPE[2] - 1
    gui.click(slider.to_window(slider.right - 2, slider.center_y))
    assert panel.sagittal.slice_index == SHAPE[2] - 1
    assert state.cursor_ijk[2] == SHAPE[2] - 1
    gui.click(slider.to_window(slider.x + 2, slider.center_y))
    assert panel.sagittal.slice_index == 0
    # Dragging the thumb to the middle of its travel: slice (n - 1) / 2, rounded.
    gui.drag(slider.to_window(slider.x + 2, slider.center_y), slider.to_window(*slider.center))
    assert abs(panel.sagittal.slice_index - (SHAPE[2] - 1) / 2) <= 0.5
    # The slider follows the wheel on the view.
    gui.scroll(panel.sagittal, "up")
    assert slider.value == panel.sagittal.slice_index == state.cursor_ijk[2]


def test_click_moves_the_crosshair_and_the_other_views(viewer) -> None:
    gui, panel, state = viewer
    ct = state.ct
    target_lps = (-30.0, 25.0, 0.0)  # x, y on voxel centres: column 34, row 84
    k0 = state.cursor_ijk[0]
    gui.click(_window_xy(panel.axial, target_lps))
    _, j, i = _voxel_of(ct, target_lps)
    assert list(state.cursor_ijk) == [k0, round(j), round(i)]
    assert panel.coronal.slice_index == round(j) == 84
    assert panel.sagittal.slice_index == round(i) == 34
    # The vertical crosshair line is drawn through that column in the coronal view, in air.
    x, y = _window_xy(panel.coronal, (target_lps[0], 0.0, 0.0))
    top = panel.coronal.to_window(panel.coronal.x, panel.coronal.top)[1] - 3
    rgba = gui.screenshot()
    height = rgba.shape[0]
    column = rgba[height - 1 - int(top) : height - int(y) - 60, int(x) - 2 : int(x) + 3, :3]
    assert column.max() > 60  # crosshair grey over black air above the body
    # A drag (moving more than the click slop) pans and does not move the cursor.
    start = _window_xy(panel.axial, (0.0, 0.0, 0.0))
    gui.drag(start, (start[0] + 40, start[1] - 20))
    assert list(state.cursor_ijk) == [k0, round(j), round(i)]
    s = panel.axial.view_scale()
    assert panel.axial.pan_mm[0] == pytest.approx(-40 / s, abs=1e-6)
    assert panel.axial.pan_mm[1] == pytest.approx(20 / s, abs=1e-6)


def test_ctrl_wheel_zooms_about_the_mouse(viewer) -> None:
    gui, panel, _state = viewer
    view = panel.axial
    point = _window_xy(view, SPHERE_LPS)
    before = view.screen_to_plane(*view.to_widget(*point))
    gui.scroll(point, "up", modifiers=("ctrl",), clicks=2)
    assert view.zoom == pytest.approx(1.15**2)
    after = view.screen_to_plane(*view.to_widget(*point))
    assert after == pytest.approx(before, abs=1e-6)
    assert view.slice_index == _state.cursor_ijk[0]  # zooming does not change the slice
    gui.scroll(point, "down", modifiers=("ctrl",))
    assert view.zoom == pytest.approx(1.15)


def test_right_drag_changes_window_and_level(viewer) -> None:
    gui, panel, state = viewer
    state.apply_preset("soft tissue")
    c = panel.axial.to_window(*panel.axial.center)
    gui.drag(c, (c[0] + 100, c[1]), button="right")
    assert state.window_hu > 400.0
    assert state.level_hu == pytest.approx(40.0)
    w = state.window_hu
    gui.drag(c, (c[0], c[1] + 50), button="right")
    assert state.window_hu == pytest.approx(w)
    assert state.level_hu > 40.0
    assert state.cursor_ijk[0] == panel.axial.slice_index


def test_preset_buttons_set_window_and_level(viewer) -> None:
    gui, panel, state = viewer
    gui.click(panel.preset_buttons["bone"])
    assert (state.window_hu, state.level_hu) == (1800.0, 400.0)
    gui.click(panel.preset_buttons["lung"])
    assert (state.window_hu, state.level_hu) == (1500.0, -600.0)
    # Lung window shows lung tissue (-700 HU) as dark grey, not black: grey = 255 * 650 / 1500.
    x, y = _window_xy(panel.axial, (-35.0, -5.0, 0.0))
    r, g, b, _ = gui.pixel(x, y)
    assert r == g == b
    assert abs(r - round(255 * (-700 - (-600 - 750)) / 1500)) <= 2


def test_structure_toggle_removes_its_outline(viewer) -> None:
    gui, panel, state = viewer
    rgba = gui.screenshot()
    assert _colour_count(rgba, panel.axial, PTV_RGB) > 50
    assert _colour_count(rgba, panel.coronal, PTV_RGB) > 30
    assert _colour_count(rgba, panel.axial, BODY_RGB) > 100
    state.set_structure_visible("PTV", False)
    rgba = gui.screenshot()
    assert _colour_count(rgba, panel.axial, PTV_RGB) == 0
    assert _colour_count(rgba, panel.coronal, PTV_RGB) == 0
    assert _colour_count(rgba, panel.axial, BODY_RGB) > 100
    state.set_structure_visible("PTV", True)
    assert _colour_count(gui.screenshot(), panel.axial, PTV_RGB) > 50


def test_dose_wash_appears_where_the_dose_is(viewer) -> None:
    gui, panel, state = viewer
    state.apply_preset("soft tissue")
    centre = _window_xy(panel.axial, (SPHERE_LPS[0] + 5.0, SPHERE_LPS[1], SPHERE_LPS[2]))
    far = _window_xy(panel.axial, (-40.0, -55.0, 0.0))  # body, far below the threshold
    r, g, b, _ = gui.pixel(*centre)
    assert r == g == b  # grey CT only
    state.set_dose(make_dose())
    gui.frames(2)
    rgba = gui.screenshot()
    height = rgba.shape[0]
    r, g, b = (int(v) for v in rgba[height - 1 - int(centre[1]), int(centre[0]), :3])
    assert r > b + 60  # red end of the map over the white bone: high dose
    r, g, b = (int(v) for v in rgba[height - 1 - int(far[1]), int(far[0]), :3])
    assert r == g == b  # below the threshold: no wash
    assert len(panel.legend.tick_values) >= 3
    state.set_dose(None)
    r, g, b, _ = gui.pixel(*centre)
    assert r == g == b


def test_dose_wash_is_placed_by_its_own_grid_in_every_view(viewer) -> None:
    """An opaque wash of a tilted linear dose on the coarse grid shows, at each probed pixel,
    the colour of the analytic dose there: any flip, offset or scale error of the dose quad
    (or of its crop to the washed region) shifts the colours."""
    from app.rendering import colormap_rgb, colour_index
    from app.viewer_state import DoseOverlay

    gui, panel, state = viewer
    for name in ("PTV", "BODY"):
        state.set_structure_visible(name, False)
    for view in panel.views:
        view.show_crosshair = False
    grid = DoseGrid(shape=(30, 30, 30), spacing_mm=(3.0, 3.0, 3.0),
                    origin_mm=(-40.0, -55.0, -45.0))
    gz, gy, gx = np.meshgrid(*(grid.origin_mm[2 - a] + 3.0 * np.arange(30) for a in range(3)),
                             indexing="ij")

    def dose_at(x: float, y: float, z: float) -> float:
        return 30.0 + 0.45 * x - 0.25 * y + 0.3 * z

    cube = dose_at(gx, gy, gz).astype(np.float32)
    state.set_dose(DoseOverlay(dose=cube, grid=grid, unit="Gy", vmin=0.0, vmax=60.0,
                               threshold=-1e6, opacity=1.0))
    rgba = gui.screenshot()
    height = rgba.shape[0]
    lut = colormap_rgb("dose").astype(int)
    probes = [(20.0, -30.0, 0.0), (-25.0, 10.0, 0.0), (30.0, 15.0, 0.0), (-10.0, -40.0, 0.0),
              (0.0, 0.0, 25.0), (15.0, -10.0, -30.0)]
    checked = 0
    for view in panel.views:
        for point in probes:
            # Only points on the view's slice (the slice through the cursor).
            normal = view.screen_to_lps(*view.center)
            axis = {"axial": 2, "coronal": 1, "sagittal": 0}[view.orientation]
            on_slice = list(point)
            on_slice[axis] = normal[axis]
            x, y = _window_xy(view, tuple(on_slice))
            got = rgba[height - 1 - int(y), int(x), :3].astype(int)
            want = lut[colour_index(np.array([dose_at(*on_slice)]), 0.0, 60.0)[0]]
            assert np.abs(got - want).max() <= 12, (view.orientation, on_slice, got, want)
            checked += 1
    assert checked == 18


def test_coronal_and_sagittal_keep_the_aspect_ratio(viewer) -> None:
    """The bone sphere's chords through its centre span (voxels on the chord) x spacing in mm
    on screen, horizontally and vertically, in every view, whatever the voxel aspect."""
    gui, panel, state = viewer
    state.apply_preset("soft tissue")
    ct = state.ct
    k, j, i = (round(v) for v in _voxel_of(ct, SPHERE_LPS))
    bone = np.asarray(ct.hu) == 1000
    chord_mm = {  # voxels of the sphere on the line through its centre, times the spacing
        "z": int(bone[:, j, i].sum()) * SPACING_MM[0],
        "y": int(bone[k, :, i].sum()) * SPACING_MM[1],
        "x": int(bone[k, j, :].sum()) * SPACING_MM[2],
    }
    assert chord_mm["z"] == 32.5 and chord_mm["y"] == 31.25 and chord_mm["x"] == 31.0
    axes = {"axial": ("x", "y"), "coronal": ("x", "z"), "sagittal": ("y", "z")}
    # Soft-tissue window: bone white (255), water 255 * 160 / 400 = 102; with linear filtering
    # the half-way grey falls half-way between the last bone and the first water voxel centre.
    half_grey = (255 + 102) / 2
    rgba = gui.screenshot("viewer_phantom")
    for name in ("PTV", "BODY"):  # outlines lie on the half-way line: measure without them
        state.set_structure_visible(name, False)
    for view in panel.views:  # and without the crosshair (it brightens the water under it)
        view.show_crosshair = False
    rgba = gui.screenshot()
    height = rgba.shape[0]
    for view in (panel.axial, panel.coronal, panel.sagittal):
        cx, cy = (int(v) for v in _window_xy(view, SPHERE_LPS))
        width_px = _run_length(rgba[height - 1 - cy, :, 1], cx, half_grey)
        height_px = _run_length(rgba[:, cx, 1], height - 1 - cy, half_grey)
        across, up = axes[view.orientation]
        scale = view.view_scale()
        assert width_px == pytest.approx(chord_mm[across] * scale, abs=3), view.orientation
        assert height_px == pytest.approx(chord_mm[up] * scale, abs=3), view.orientation


def _run_length(line: np.ndarray, start: int, threshold: float) -> int:
    """Length of the run of pixels >= threshold through index ``start``."""
    inside = line >= threshold
    assert inside[start]
    lo = start
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = start
    while hi < len(line) - 1 and inside[hi + 1]:
        hi += 1
    return hi - lo + 1


def test_hover_readout_shows_hu_and_dose_under_the_mouse(viewer) -> None:
    gui, panel, state = viewer
    state.set_dose(make_dose())
    gui.move(_window_xy(panel.axial, SPHERE_LPS))
    assert "HU 1000 " in state.readout_text + " "
    point = (-35.0, -5.0, 0.0)
    gui.move(_window_xy(panel.axial, point))
    assert "HU -700 " in state.readout_text + " "
    # The ramp: HU = 2 x column; column 100 is x = 36 mm.
    point = (36.0, 45.0, 0.0)
    gui.move(_window_xy(panel.axial, point))
    text = state.readout_text
    assert "x 36.0 y 45.0 z 0.0 mm" in text
    assert "HU 200 " in text + " "
    value = float(text.split("|")[-1].split()[0])
    assert text.endswith("Gy(RBE)")
    # Trilinear on a 3 mm grid of a Gaussian: within 3 % of the analytic value here.
    assert value == pytest.approx(analytic_dose_gy(point), rel=0.03, abs=0.05)
    assert panel.readout.text == text
    # Scrolling with the mouse still updates the readout for the new slice position.
    gui.scroll(panel.axial, "up")
    assert " z 2.5 mm" in state.readout_text


def test_export_png_writes_the_view_atomically(viewer, tmp_path: Path) -> None:
    from PIL import Image

    from planning.errors import InputError

    _gui, panel, _state = viewer
    target = panel.coronal.export_png(tmp_path / "coronal.png")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(target) as image:
        assert image.size == (int(panel.coronal.width), int(panel.coronal.height))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coronal.png"]
    with pytest.raises(InputError, match="PNG"):
        panel.coronal.export_png(tmp_path / "coronal.jpg")


def test_beams_are_drawn_in_the_planes_they_cross(viewer) -> None:
    from app.viewer_state import BeamOverlay

    gui, panel, state = viewer
    colour = (40, 255, 200)
    # From the patient's right (+x travel): seen in axial and coronal, end-on in sagittal.
    # The isocentre is off the crosshair lines, which are drawn over beams.
    iso = (10.0, 5.0, 5.0)
    state.set_beams([BeamOverlay("B1", iso, (1.0, 0.0, 0.0), colour)])
    rgba = gui.screenshot()
    assert _colour_count(rgba, panel.axial, colour) > 100
    assert _colour_count(rgba, panel.coronal, colour) > 50
    assert _colour_count(rgba, panel.sagittal, colour) < 5  # at most the label's antialiasing
    # The line ends at the isocentre: nothing of it on the patient's left of the isocentre
    # (checked on the coronal view).
    x_iso, y_iso = _window_xy(panel.coronal, iso)
    height = rgba.shape[0]
    row = rgba[height - 1 - int(y_iso), :, :3]
    hits = np.flatnonzero(np.all(row == np.asarray(colour, np.uint8), axis=-1))
    assert hits.size > 0 and hits.max() <= x_iso + 1
    state.set_beams([])
    assert _colour_count(gui.screenshot(), panel.axial, colour) == 0


def test_linked_states_follow_each_others_cursor_and_window() -> None:
    from app.viewer_state import ViewerState

    ct, _ = make_phantom()
    a, b = ViewerState(), ViewerState()
    a.set_ct(ct)
    b.set_ct(ct)
    a.set_cursor(3, 4, 5)
    a.link(b)
    assert list(b.cursor_ijk) == [3, 4, 5]
    b.set_slice("axial", 20)
    assert list(a.cursor_ijk) == [20, 4, 5]
    a.apply_preset("bone")
    assert (b.window_hu, b.level_hu) == (1800.0, 400.0)
    a.unlink(b)
    a.set_cursor(1, 1, 1)
    assert list(b.cursor_ijk) == [20, 4, 5]


def test_overlays_reject_inconsistent_input() -> None:
    from app.viewer_state import BeamOverlay, DoseOverlay, StructureOverlay, ViewerState
    from planning.errors import InputError

    grid = DoseGrid(shape=(2, 3, 4), spacing_mm=(3.0, 3.0, 3.0), origin_mm=(0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="does not match its grid"):
        DoseOverlay(dose=np.zeros((2, 3, 5), np.float32), grid=grid, unit="Gy", vmin=0, vmax=1)
    with pytest.raises(InputError, match="vmin < vmax"):
        DoseOverlay(dose=np.zeros((2, 3, 4), np.float32), grid=grid, unit="Gy", vmin=1, vmax=1)
    with pytest.raises(InputError, match="2 isodose colours for 1 levels"):
        DoseOverlay(dose=np.zeros((2, 3, 4), np.float32), grid=grid, unit="Gy", vmin=0, vmax=1,
                    isodose_levels=(0.5,), isodose_colours=((1, 2, 3), (4, 5, 6)))
    with pytest.raises(InputError, match="unit vector"):
        BeamOverlay("B", (0.0, 0.0, 0.0), (1.0, 1.0, 0.0))
    state = ViewerState()
    with pytest.raises(InputError, match="before a CT"):
        state.set_dose(DoseOverlay(dose=np.zeros((2, 3, 4), np.float32), grid=grid,
                                   unit="Gy", vmin=0, vmax=1))
    ct, masks = make_phantom()
    state.set_ct(ct)
    small = RoiMask.empty((2, 3, 4))
    with pytest.raises(InputError, match="is not the CT grid"):
        state.set_structures([StructureOverlay("X", (1, 2, 3), small)])
    with pytest.raises(InputError, match="unique"):
        state.set_structures([StructureOverlay("X", (1, 2, 3), masks["PTV"])] * 2)
    with pytest.raises(InputError, match="no structure named"):
        state.set_structure_visible("X", False)
    with pytest.raises(InputError, match="not one of"):
        state.apply_preset("liver")


def test_the_readout_never_shows_minus_zero() -> None:
    """A point on a plane through the origin read "y -0.0" (GUI walkthrough)."""
    from app.viewer_state import ViewerState

    text = ViewerState().readout_at((12.34, -0.04, -0.0))
    assert text.startswith("x 12.3 y 0.0 z 0.0 mm"), text
    assert ViewerState().readout_at((-1.26, 0.0, 5.0)).startswith("x -1.3 y 0.0 z 5.0 mm")


def test_structure_outlines_are_dashed_and_isodose_lines_solid(viewer) -> None:
    """The GTV outline (red) and the 107 % isodose (red), the PTV (orange) and the 95 %
    isodose (orange) were the same 1 px solid lines: a structure reads as a hot spot (review).
    Structure outlines are dashed, isodose lines solid; on screen, a dashed PTV outline is
    broken: its pixels along the sphere's outline have gaps."""
    from kivy.graphics import Line

    from app.widgets.slice_view import STRUCTURE_DASH_MM

    gui, panel, state = viewer
    state.set_dose(make_dose())
    gui.frames(2)
    view = panel.axial
    outlines = [i for i in view._structure_group.children if isinstance(i, Line)]
    isodoses = [i for i in view._isodose_group.children if isinstance(i, Line)]
    assert outlines and isodoses
    assert all((i.dash_length, i.dash_offset) == STRUCTURE_DASH_MM for i in outlines)
    assert all(i.dash_offset == 0 for i in isodoses)
    # Around the PTV's outline (radius 15 mm in the axial plane through its centre): PTV
    # pixels, and pixels between them that are not.
    rgba = gui.screenshot()
    height = rgba.shape[0]
    hits = []
    for angle in np.linspace(0.0, 2 * np.pi, 720, endpoint=False):
        point = (SPHERE_LPS[0] + SPHERE_RADIUS_MM * np.cos(angle),
                 SPHERE_LPS[1] + SPHERE_RADIUS_MM * np.sin(angle), SPHERE_LPS[2])
        x, y = (round(v) for v in _window_xy(view, point))
        near = rgba[height - 1 - y - 1:height - y + 1, x - 1:x + 2, :3]
        hits.append(bool(np.any(np.all(near == np.asarray(PTV_RGB, np.uint8), axis=-1))))
    assert 0.2 < np.mean(hits) < 0.9, np.mean(hits)
