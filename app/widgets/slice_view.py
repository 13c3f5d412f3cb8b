"""One orthogonal slice view (axial, coronal or sagittal) of a :class:`ViewerState`.

Drawing
-------
Everything is in the widget's one canvas. Images and lines are drawn in *plane* mm (see
:mod:`app.rendering`) under a ``Translate`` + ``Scale`` pair, so pan and zoom change two
instructions only, and a coarse dose grid's texture is placed by its own extent in mm and
interpolated by the GPU (no resampling in NumPy). A slice change re-uploads the CT and dose
textures (``blit_buffer`` into textures that are kept) and rebuilds the line groups (isodoses,
structure outlines: cached per slice). Lines are 1 px GL line strips (``Line`` with width 1,
joint and cap ``"none"``); structure outlines are dashed (:data:`STRUCTURE_DASH_MM`), isodose
lines solid, so that a structure in an isodose's colour is not read as that isodose. Redraws
are coalesced to one per frame with a Clock trigger.

Interaction
-----------
Wheel (or up/down, page up/page down over the view): next/previous slice; Ctrl+wheel: zoom
about the mouse; left drag: pan; left click (press and release without moving): move the
crosshair there (the other views go to its slices); right drag: window (horizontal, wider to the
right) and level (vertical, higher upwards); Home: all views of the state fit the whole slice
again (zoom and pan reset); hover: position, HU and dose into
``state.readout_text``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.core.window import Window
from kivy.graphics import (
    Color,
    InstructionGroup,
    Line,
    PopMatrix,
    PushMatrix,
    Rectangle,
    Scale,
    Translate,
)
from kivy.graphics.scissor_instructions import ScissorPop, ScissorPush
from kivy.graphics.texture import Texture
from kivy.input.motionevent import MotionEvent
from kivy.properties import BooleanProperty, ListProperty, NumericProperty
from kivy.uix.relativelayout import RelativeLayout
from kivy.uix.widget import Widget
from numpy.typing import NDArray

from app import rendering
from app.viewer_state import ViewerState
from planning.errors import InputError

#: Pointer travel (px) below which a left press + release is a click, not a pan.
CLICK_SLOP_PX = 4.0
#: Zoom factor per Ctrl+wheel step, and the zoom limits.
ZOOM_STEP = 1.15
MIN_ZOOM, MAX_ZOOM = 0.25, 32.0
#: Slices moved by page up / page down.
PAGE_STEP = 5
#: Right-drag sensitivity: HU per pixel per HU of window width at the start of the drag.
WL_GAIN_PER_PX = 1.0 / 200.0
_KEY_UP, _KEY_DOWN, _KEY_PAGEUP, _KEY_PAGEDOWN = 273, 274, 280, 281
#: Home over a view: every view of its state fits the whole slice again.
_KEY_HOME = 278
_KEY_LCTRL, _KEY_RCTRL = 305, 306
#: Wheel buttons: Kivy names the physical wheel-up event "scrolldown" (kivy issue 2070).
_WHEEL_AWAY = "scrolldown"
_WHEEL_TOWARDS = "scrollup"
_CROSSHAIR_RGBA = (1.0, 1.0, 1.0, 0.45)
_LABEL_RGBA = (1.0, 0.85, 0.2, 1.0)
#: The band behind the slice text (dark, half transparent).
_INFO_BACKGROUND_RGBA = (0.0, 0.0, 0.0, 0.6)
_FAR_MM = 1.0e5
#: Beams are drawn from this far upstream of the isocentre (beyond any body).
BEAM_LENGTH_MM = 250.0
#: Dash and gap (plane mm; whole numbers, as Kivy's ``Line`` takes them) of the structure
#: outlines; isodose lines are solid. Structure
#: colours come from the structure set and may be isodose colours (the demo's GTV is the red
#: of the 107 % line, its PTV the orange of the 95 % line): the line style tells them apart,
#: as in the plan document (:data:`planning.document.drawings.STRUCTURE_DASH`).
STRUCTURE_DASH_MM = (3, 2)


def _text_texture(text: str, font_size: float, bold: bool = False) -> Texture:
    label = CoreLabel(text=text, font_size=font_size, bold=bold)
    label.refresh()
    return label.texture


def _flat(points: NDArray[np.float64]) -> list[float]:
    return points.reshape(-1).tolist()


def _place_texture(rect: Rectangle, mapping: rendering.PlaneMapping) -> Texture:
    """A new RGBA texture of the plane's pixel shape (numpy row 0 shown at the top), set on
    ``rect``, which is placed over the plane's extent in mm."""
    rows, cols = mapping.shape
    texture = Texture.create(size=(cols, rows), colorfmt="rgba", bufferfmt="ubyte")
    texture.flip_vertical()
    rect.texture = texture
    u_min, v_min, u_max, v_max = mapping.extent_mm
    rect.pos = (u_min, v_min)
    rect.size = (u_max - u_min, v_max - v_min)
    return texture


class SliceView(Widget):
    """A slice view of ``state`` in one orientation.

    Parameters
    ----------
    state : ViewerState
        Shared with the other views of the viewer.
    orientation : ``"axial"``, ``"coronal"`` or ``"sagittal"``

    Properties
    ----------
    slice_index : int
        The slice shown: the cursor's component along this view's normal (setting it moves the
        cursor).
    slice_count : int
        Number of slices in this orientation (0 before a CT is set).
    zoom : float
        Magnification relative to fitting the whole CT slice in the view.
    pan_mm : [du, dv]
        Plane offset (mm) of the view centre from the CT slice centre.
    show_crosshair : bool
        Whether the crosshair lines are drawn.
    """

    slice_index = NumericProperty(0)
    slice_count = NumericProperty(0)
    zoom = NumericProperty(1.0)
    pan_mm = ListProperty([0.0, 0.0])
    show_crosshair = BooleanProperty(True)

    def __init__(self, state: ViewerState, orientation: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.orientation: rendering.Orientation = rendering.check_orientation(orientation)
        self._axis = rendering.NORMAL_AXIS[self.orientation]
        self._ct_mapping: rendering.PlaneMapping | None = None
        self._dose_mapping: rendering.PlaneMapping | None = None
        self._ct_texture: Texture | None = None
        self._dose_texture: Texture | None = None
        self._lut: NDArray[np.uint32] | None = None
        self._lut_key: tuple[float, float] | None = None
        self._outlines = rendering.OutlineCache()
        self._dirty: set[str] = set()
        self._ctrl_down = False
        self._hover_plane: tuple[float, float] | None = None
        self._beam_labels: list[tuple[Rectangle, float, float]] = []
        self._followed: list[Widget] = []  # relative-layout ancestors whose moves we follow
        #: Wall time of the last redraw (NumPy, uploads, instructions), s; for benchmarks.
        self.refresh_seconds = 0.0
        self._build_canvas()
        self._trigger = Clock.create_trigger(self._refresh, -1)
        state.bind(on_data=self._on_data, on_fit_views=lambda _s: self.reset_view(),
                   cursor_ijk=self._on_cursor,
                   window_hu=self._on_window_level, level_hu=self._on_window_level)
        self.bind(pos=self._on_geometry, size=self._on_geometry, parent=self._on_geometry,
                  zoom=self._on_geometry, pan_mm=self._on_geometry,
                  slice_index=self._on_slice_index, show_crosshair=self._on_show_crosshair)
        Window.bind(mouse_pos=self._on_mouse_pos, on_key_down=self._on_key_down,
                    on_key_up=self._on_key_up)
        if state.ct is not None:
            self._on_data(state, "ct")
            for what in ("structures", "dose", "beams"):
                self._on_data(state, what)

    # ------------------------------------------------------------------ canvas
    def _build_canvas(self) -> None:
        with self.canvas:
            # Clipping by scissor, not stencil: on llvmpipe a stencil costs two extra fills
            # of the view and a stencil test on every fragment. The scissor box is in window
            # pixels (see _update_transform and export_as_image).
            self._scissor = ScissorPush(x=0, y=0, width=1, height=1)
            # Black only around the image (four strips): no second fill under the CT.
            Color(0.0, 0.0, 0.0, 1.0)
            self._background = [Rectangle(pos=(0, 0), size=(0, 0)) for _ in range(4)]
            PushMatrix()
            self._translate = Translate(0.0, 0.0)
            self._scale = Scale(1.0, 1.0, 1.0)
            Color(1.0, 1.0, 1.0, 1.0)
            self._ct_rect = Rectangle(pos=(0, 0), size=(0, 0))
            self._dose_colour = Color(1.0, 1.0, 1.0, 1.0)
            self._dose_rect = Rectangle(pos=(0, 0), size=(0, 0))
            self._isodose_group = InstructionGroup()
            self._structure_group = InstructionGroup()
            self._beam_group = InstructionGroup()
            self._cross_colour = Color(*_CROSSHAIR_RGBA)
            self._cross_v = Line(points=[0, 0, 0, 0], width=1.0, cap="none", joint="none")
            self._cross_h = Line(points=[0, 0, 0, 0], width=1.0, cap="none", joint="none")
            PopMatrix()
            self._overlay_group = InstructionGroup()
            self._beam_label_group = InstructionGroup()
            ScissorPop()
        self._edge_labels: dict[str, Rectangle] = {}
        self._info_rect: Rectangle | None = None
        self._build_edge_labels()

    def _build_edge_labels(self) -> None:
        group = self._overlay_group
        # The slice text on a dark band: legible over bone and bright dose washes.
        group.add(Color(*_INFO_BACKGROUND_RGBA))
        self._info_background = Rectangle(size=(0, 0))
        group.add(self._info_background)
        group.add(Color(*_LABEL_RGBA))
        for edge, letter in rendering.EDGE_LABELS[self.orientation].items():
            texture = _text_texture(letter, 15, bold=True)
            rect = Rectangle(texture=texture, size=texture.size)
            group.add(rect)
            self._edge_labels[edge] = rect
        self._info_rect = Rectangle(size=(0, 0))
        group.add(self._info_rect)

    # ------------------------------------------------------------------ state events
    def _on_data(self, _state: ViewerState, what: str) -> None:
        if what == "ct":
            self._set_ct()
            self._dirty.update({"ct", "dose", "structures", "beams", "cross"})
        elif what == "dose":
            self._set_dose()
            self._dirty.add("dose")
        elif what in ("structures", "visibility"):
            if what == "structures":
                self._outlines.clear()
            self._dirty.add("structures")
        elif what == "beams":
            self._dirty.add("beams")
        self._trigger()

    def _on_cursor(self, _state: ViewerState, cursor: list[int]) -> None:
        index = int(cursor[self._axis])
        if index != self.slice_index:
            self.slice_index = index
        self._dirty.add("cross")
        self._trigger()

    def _on_slice_index(self, _view: SliceView, index: float) -> None:
        if self.state.ct is not None and int(index) != self.state.cursor_ijk[self._axis]:
            self.state.set_slice(self.orientation, int(index))
            return
        self._dirty.update({"ct", "dose", "structures", "info"})
        self._trigger()

    def _on_window_level(self, *_args: object) -> None:
        self._dirty.add("ct")
        self._trigger()

    def _on_show_crosshair(self, _view: SliceView, show: bool) -> None:
        self._cross_colour.a = _CROSSHAIR_RGBA[3] if show else 0.0
        self.canvas.ask_update()

    def _on_geometry(self, *_args: object) -> None:
        self._follow_moving_ancestors()
        self._update_transform()

    def _follow_moving_ancestors(self) -> None:
        """Recompute the window-pixel scissor box when a relative ancestor moves too.

        Inside a RelativeLayout (a Screen is one) the view's own ``pos`` does not change when
        the layout moves, but its place in the window does.
        """
        node = self.parent
        while node is not None and node is not node.parent:
            if isinstance(node, RelativeLayout) and node not in self._followed:
                node.bind(pos=self._on_geometry)
                self._followed.append(node)
            node = node.parent

    def _set_ct(self) -> None:
        ct = self.state.ct
        assert ct is not None
        self._outlines.clear()
        mapping = rendering.plane_mapping(ct, self.orientation)
        self._ct_mapping = mapping
        self._ct_texture = _place_texture(self._ct_rect, mapping)
        self.slice_count = rendering.slice_count(ct, self.orientation)
        self.slice_index = int(self.state.cursor_ijk[self._axis])
        self.zoom = 1.0
        self.pan_mm = [0.0, 0.0]
        self._set_dose()
        self._update_transform()

    def _set_dose(self) -> None:
        overlay = self.state.dose
        if overlay is None:
            self._dose_mapping = None
            self._dose_texture = None
            self._dose_rect.texture = None
            self._dose_rect.size = (0, 0)
            return
        mapping = rendering.plane_mapping(overlay.grid, self.orientation)
        self._dose_mapping = mapping
        self._dose_texture = _place_texture(self._dose_rect, mapping)

    # ------------------------------------------------------------------ redraw
    def _refresh(self, *_args: object) -> None:
        """Bring the dirty parts of the canvas up to date (runs once per frame at most)."""
        start = time.perf_counter()
        try:
            self._refresh_dirty()
        finally:
            self.refresh_seconds = time.perf_counter() - start

    def _refresh_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if self.state.ct is None or self._ct_mapping is None:
            return
        if "ct" in dirty:
            self._draw_ct()
        if "dose" in dirty:
            self._draw_dose()
        if "structures" in dirty:
            self._draw_structures()
        if "beams" in dirty:
            self._draw_beams()
        if "cross" in dirty:
            self._draw_crosshair()
        if dirty & {"ct", "info"}:
            self._draw_info()
        if self._hover_plane is not None and dirty & {"ct", "dose"}:
            self._update_readout(*self._hover_plane)
        self.canvas.ask_update()

    def _draw_ct(self) -> None:
        ct = self.state.ct
        assert ct is not None and self._ct_texture is not None
        key = (float(self.state.window_hu), float(self.state.level_hu))
        if key != self._lut_key:
            self._lut = rendering.window_level_lut(*key)
            self._lut_key = key
        assert self._lut is not None
        hu = rendering.extract_slice(ct.hu, self.orientation, int(self.slice_index))
        rgba = rendering.hu_to_rgba(hu, self._lut)
        self._ct_texture.blit_buffer(rgba.reshape(-1), colorfmt="rgba", bufferfmt="ubyte")

    def _current_dose_slice(self) -> NDArray[np.float32] | None:
        overlay = self.state.dose
        ct = self.state.ct
        if overlay is None or ct is None:
            return None
        position = rendering.slice_position_mm(ct, self.orientation, int(self.slice_index))
        return rendering.interpolated_slice(overlay.dose, overlay.grid, self.orientation,
                                            position)

    def _draw_dose(self) -> None:
        self._isodose_group.clear()
        overlay = self.state.dose
        dose_slice = self._current_dose_slice()
        if overlay is None or dose_slice is None or self._dose_texture is None:
            self._dose_colour.a = 0.0
            return
        assert self._dose_mapping is not None
        self._dose_colour.a = 1.0
        rgba = rendering.dose_to_rgba(
            dose_slice, colormap=overlay.colormap, vmin=overlay.vmin, vmax=overlay.vmax,
            threshold=overlay.threshold, opacity=overlay.opacity,
        )
        self._dose_texture.blit_buffer(rgba.reshape(-1), colorfmt="rgba", bufferfmt="ubyte")
        self._crop_dose_quad(rgba[..., 3] > 0)
        levels = overlay.isodose_levels
        if not levels:
            return
        lines = rendering.isodose_lines(dose_slice, self._dose_mapping, levels)
        group = self._isodose_group
        for colour, polylines in zip(overlay.level_colours, lines, strict=True):
            if not polylines:
                continue
            group.add(Color(colour[0] / 255.0, colour[1] / 255.0, colour[2] / 255.0, 1.0))
            for poly in polylines:
                group.add(Line(points=_flat(poly), width=1.0, cap="none", joint="none"))

    def _crop_dose_quad(self, visible: NDArray[np.bool_]) -> None:
        """Shrink the dose quad to the washed texels plus one (fewer fragments to fill; the
        margin keeps the filtered fade at the threshold edge)."""
        assert self._dose_mapping is not None
        rows_any = np.flatnonzero(visible.any(axis=1))
        cols_any = np.flatnonzero(visible.any(axis=0))
        if rows_any.size == 0:
            self._dose_colour.a = 0.0
            return
        n_rows, n_cols = visible.shape
        r0, r1 = max(int(rows_any[0]) - 1, 0), min(int(rows_any[-1]) + 1, n_rows - 1)
        c0, c1 = max(int(cols_any[0]) - 1, 0), min(int(cols_any[-1]) + 1, n_cols - 1)
        m = self._dose_mapping
        u_left = m.u0_mm + (c0 - 0.5) * m.du_mm
        v_top = m.v0_mm - (r0 - 0.5) * m.dv_mm
        self._dose_rect.pos = (u_left, v_top - (r1 - r0 + 1) * m.dv_mm)
        self._dose_rect.size = ((c1 - c0 + 1) * m.du_mm, (r1 - r0 + 1) * m.dv_mm)
        # Texture v runs from display row 0 (v = 0) down (flipped texture); vertices are
        # bottom-left, bottom-right, top-right, top-left.
        tu0, tu1 = c0 / n_cols, (c1 + 1) / n_cols
        tv_top, tv_bottom = r0 / n_rows, (r1 + 1) / n_rows
        self._dose_rect.tex_coords = (tu0, tv_bottom, tu1, tv_bottom, tu1, tv_top, tu0, tv_top)

    def _draw_structures(self) -> None:
        group = self._structure_group
        group.clear()
        assert self._ct_mapping is not None
        index = int(self.slice_index)
        for overlay in self.state.structures:
            if overlay.name not in self.state.visible_structures:
                continue
            polylines = self._outlines.outlines(overlay.mask, self._ct_mapping, index)
            if not polylines:
                continue
            r, g, b = overlay.colour_rgb
            group.add(Color(r / 255.0, g / 255.0, b / 255.0, 1.0))
            dash, gap = STRUCTURE_DASH_MM
            for poly in polylines:
                group.add(Line(points=_flat(poly), width=1.0, cap="none", joint="none",
                               close=True, dash_length=dash, dash_offset=gap))

    def _draw_beams(self) -> None:
        group = self._beam_group
        group.clear()
        self._beam_label_group.clear()
        self._beam_labels = []
        for beam in self.state.beams:
            seg = rendering.beam_segment(beam.isocenter_mm, beam.direction_lps, BEAM_LENGTH_MM,
                                         self.orientation)
            if seg is None:
                continue
            r, g, b = beam.colour_rgb
            group.add(Color(r / 255.0, g / 255.0, b / 255.0, 1.0))
            group.add(Line(points=_flat(seg), width=1.0, cap="none", joint="none"))
            texture = _text_texture(beam.label, 13)
            rect = Rectangle(texture=texture, size=texture.size)
            self._beam_label_group.add(Color(r / 255.0, g / 255.0, b / 255.0, 1.0))
            self._beam_label_group.add(rect)
            self._beam_labels.append((rect, float(seg[0, 0]), float(seg[0, 1])))
        self._place_beam_labels()

    def _draw_crosshair(self) -> None:
        ct = self.state.ct
        assert ct is not None
        point = rendering.voxel_to_lps(ct, self.state.cursor_ijk)
        (u, v), = rendering.lps_to_plane(point, self.orientation)
        self._cross_v.points = [u, -_FAR_MM, u, _FAR_MM]
        self._cross_h.points = [-_FAR_MM, v, _FAR_MM, v]

    def _draw_info(self) -> None:
        ct = self.state.ct
        if ct is None or self._info_rect is None:
            return
        axis_name = "zyx"[self._axis]
        position = rendering.slice_position_mm(ct, self.orientation, int(self.slice_index))
        text = (f"{self.orientation}  {axis_name} {position:.1f} mm  "
                f"{int(self.slice_index) + 1}/{int(self.slice_count)}")
        texture = _text_texture(text, 12)
        self._info_rect.texture = texture
        self._info_rect.size = texture.size
        self._place_info()
        self._place_edge_labels()

    # ------------------------------------------------------------------ transform
    def _centre(self) -> tuple[float, float]:
        """The view's centre from ``pos`` and ``size`` (Kivy's cached ``center``, ``right`` and
        ``top`` aliases can lag behind a resize while ``size`` is dispatched)."""
        return (self.x + 0.5 * self.width, self.y + 0.5 * self.height)

    def view_scale(self) -> float:
        """Screen pixels per mm."""
        if self._ct_mapping is None or self.width <= 0 or self.height <= 0:
            return 1.0
        u_min, v_min, u_max, v_max = self._ct_mapping.extent_mm
        fit = min(self.width / (u_max - u_min), self.height / (v_max - v_min))
        return fit * float(self.zoom)

    def _view_centre_mm(self) -> tuple[float, float]:
        if self._ct_mapping is None:
            return (0.0, 0.0)
        u_min, v_min, u_max, v_max = self._ct_mapping.extent_mm
        return (0.5 * (u_min + u_max) + float(self.pan_mm[0]),
                0.5 * (v_min + v_max) + float(self.pan_mm[1]))

    def plane_to_screen(self, u_mm: float, v_mm: float) -> tuple[float, float]:
        """Widget (parent) coordinates of a plane point."""
        s = self.view_scale()
        uc, vc = self._view_centre_mm()
        cx, cy = self._centre()
        return (cx + (u_mm - uc) * s, cy + (v_mm - vc) * s)

    def screen_to_plane(self, x: float, y: float) -> tuple[float, float]:
        """Plane mm of a point in widget (parent) coordinates."""
        s = self.view_scale()
        uc, vc = self._view_centre_mm()
        cx, cy = self._centre()
        return (uc + (x - cx) / s, vc + (y - cy) / s)

    def screen_to_lps(self, x: float, y: float) -> tuple[float, float, float] | None:
        """LPS mm of a point of the view on the current slice; None without a CT."""
        ct = self.state.ct
        if ct is None:
            return None
        u, v = self.screen_to_plane(x, y)
        normal = rendering.slice_position_mm(ct, self.orientation, int(self.slice_index))
        return rendering.plane_to_lps(u, v, self.orientation, normal)

    def _update_transform(self) -> None:
        s = self.view_scale()
        uc, vc = self._view_centre_mm()
        cx, cy = self._centre()
        self._translate.xy = (cx - uc * s, cy - vc * s)
        self._scale.xyz = (s, s, 1.0)
        wx, wy = self.to_window(self.x, self.y)
        self._scissor.x, self._scissor.y = math.floor(wx), math.floor(wy)
        self._scissor.width = max(math.ceil(self.width), 0)
        self._scissor.height = max(math.ceil(self.height), 0)
        self._place_background(s, uc, vc)
        self._place_edge_labels()
        self._place_beam_labels()
        self._place_info()

    def _place_background(self, scale: float, uc: float, vc: float) -> None:
        """Black strips left, right, below and above the CT image (the parts it leaves)."""
        x0, y0, x1, y1 = self.x, self.y, self.x + self.width, self.y + self.height
        cx, cy = self._centre()
        if self._ct_mapping is None:
            ix0 = ix1 = x1
            iy0 = iy1 = y1
        else:
            u_min, v_min, u_max, v_max = self._ct_mapping.extent_mm
            ix0 = min(max(cx + (u_min - uc) * scale, x0), x1)
            ix1 = min(max(cx + (u_max - uc) * scale, x0), x1)
            iy0 = min(max(cy + (v_min - vc) * scale, y0), y1)
            iy1 = min(max(cy + (v_max - vc) * scale, y0), y1)
        left, right, below, above = self._background
        left.pos, left.size = (x0, y0), (ix0 - x0, y1 - y0)
        right.pos, right.size = (ix1, y0), (x1 - ix1, y1 - y0)
        below.pos, below.size = (ix0, y0), (ix1 - ix0, iy0 - y0)
        above.pos, above.size = (ix0, iy1), (ix1 - ix0, y1 - iy1)

    def _place_edge_labels(self) -> None:
        """Orientation letters at the middle of each edge; the top one moves below the slice
        text (top left) when a narrow view would make them overlap."""
        pad = 4.0
        cx, cy = self._centre()
        top = self.y + self.height
        info_w, info_h = self._info_rect.size if self._info_rect is not None else (0.0, 0.0)
        for edge, rect in self._edge_labels.items():
            w, h = rect.size
            if edge == "top":
                below_info = self.x + 4 + info_w + pad > cx - w / 2
                rect.pos = (cx - w / 2, top - h - pad - (info_h + 2 if below_info else 0.0))
            elif edge == "bottom":
                rect.pos = (cx - w / 2, self.y + pad)
            elif edge == "left":
                rect.pos = (self.x + pad, cy - h / 2)
            else:
                rect.pos = (self.x + self.width - w - pad, cy - h / 2)

    def _place_info(self) -> None:
        """The slice text at the top left, on its background band."""
        if self._info_rect is None:
            return
        w, h = self._info_rect.size
        x, y = self.x + 4, self.y + self.height - h - 4
        self._info_rect.pos = (x, y)
        self._info_background.pos = (x - 3, y - 1)
        self._info_background.size = (w + 6, h + 2) if w > 0 else (0, 0)

    def _place_beam_labels(self) -> None:
        for rect, u, v in self._beam_labels:
            x, y = self.plane_to_screen(u, v)
            rect.pos = (x - rect.size[0] / 2, y + 2)

    # ------------------------------------------------------------------ input
    def _ctrl(self) -> bool:
        return self._ctrl_down or "ctrl" in Window.modifiers

    def on_touch_down(self, touch: MotionEvent) -> bool:
        if not self.collide_point(*touch.pos) or self.state.ct is None:
            return super().on_touch_down(touch)
        button = getattr(touch, "button", "left")
        if button in (_WHEEL_AWAY, _WHEEL_TOWARDS):
            step = 1 if button == _WHEEL_AWAY else -1
            if self._ctrl():
                self.zoom_about(touch.x, touch.y, ZOOM_STEP ** step)
            else:
                self.step_slice(step)
            return True
        if button not in ("left", "right"):
            return super().on_touch_down(touch)
        touch.grab(self)
        touch.ud[self._ud_key] = {
            "button": button, "start": touch.pos, "moved": False,
            "pan": tuple(self.pan_mm), "window": float(self.state.window_hu),
            "level": float(self.state.level_hu),
        }
        return True

    @property
    def _ud_key(self) -> str:
        return f"slice_view_{id(self)}"

    def on_touch_move(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return super().on_touch_move(touch)
        info = touch.ud.get(self._ud_key)
        if info is None:
            return False
        dx = touch.x - info["start"][0]
        dy = touch.y - info["start"][1]
        if not info["moved"] and math.hypot(dx, dy) < CLICK_SLOP_PX:
            return True
        info["moved"] = True
        if info["button"] == "left":
            s = self.view_scale()
            self.pan_mm = [info["pan"][0] - dx / s, info["pan"][1] - dy / s]
        else:
            gain = max(info["window"], 50.0) * WL_GAIN_PER_PX
            self.state.set_window_level(info["window"] + dx * gain, info["level"] + dy * gain)
        return True

    def on_touch_up(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return super().on_touch_up(touch)
        touch.ungrab(self)
        info = touch.ud.pop(self._ud_key, None)
        if info is not None and info["button"] == "left" and not info["moved"]:
            self.click_at(*touch.pos)
        return True

    def click_at(self, x: float, y: float) -> None:
        """Move the crosshair to the voxel under widget point ``(x, y)`` (kept in the CT)."""
        ct = self.state.ct
        point = self.screen_to_lps(x, y)
        if ct is None or point is None:
            return
        k, j, i = rendering.lps_to_voxel(ct, point)
        cursor = [round(k), round(j), round(i)]
        cursor[self._axis] = int(self.slice_index)
        self.state.set_cursor(*cursor)

    def step_slice(self, step: int) -> None:
        """Show the slice ``step`` slices further (clipped to the CT)."""
        if self.state.ct is None:
            return
        self.state.set_slice(self.orientation, int(self.slice_index) + int(step))

    def zoom_about(self, x: float, y: float, factor: float) -> None:
        """Multiply the zoom by ``factor`` keeping the plane point under ``(x, y)`` in place."""
        u, v = self.screen_to_plane(x, y)
        new_zoom = min(max(float(self.zoom) * factor, MIN_ZOOM), MAX_ZOOM)
        if self._ct_mapping is None or new_zoom == self.zoom:
            return
        self.zoom = new_zoom
        s = self.view_scale()
        u_min, v_min, u_max, v_max = self._ct_mapping.extent_mm
        cx, cy = self._centre()
        uc = u - (x - cx) / s
        vc = v - (y - cy) / s
        self.pan_mm = [uc - 0.5 * (u_min + u_max), vc - 0.5 * (v_min + v_max)]

    def reset_view(self) -> None:
        """Fit the whole slice (zoom 1, no pan)."""
        self.zoom = 1.0
        self.pan_mm = [0.0, 0.0]

    def _under_mouse(self) -> bool:
        if self.get_root_window() is None:
            return False
        return self.collide_point(*self.to_widget(*Window.mouse_pos))

    def _on_key_down(self, _window: object, key: int, *_args: object) -> bool:
        if key in (_KEY_LCTRL, _KEY_RCTRL):
            self._ctrl_down = True
            return False
        steps = {_KEY_UP: 1, _KEY_DOWN: -1, _KEY_PAGEUP: PAGE_STEP, _KEY_PAGEDOWN: -PAGE_STEP}
        if key not in (*steps, _KEY_HOME) or not self._under_mouse():
            return False
        if key == _KEY_HOME:
            self.state.fit_views()
            return True
        self.step_slice(steps[key])
        return True

    def _on_key_up(self, _window: object, key: int, *_args: object) -> bool:
        if key in (_KEY_LCTRL, _KEY_RCTRL):
            self._ctrl_down = False
        return False

    def _on_mouse_pos(self, _window: object, pos: tuple[float, float]) -> None:
        if self.get_root_window() is None or self.state.ct is None:
            return
        x, y = self.to_widget(*pos)
        if not self.collide_point(x, y):
            self._hover_plane = None
            return
        self._hover_plane = self.screen_to_plane(x, y)
        self._update_readout(*self._hover_plane)

    def _update_readout(self, u_mm: float, v_mm: float) -> None:
        ct = self.state.ct
        if ct is None:
            return
        normal = rendering.slice_position_mm(ct, self.orientation, int(self.slice_index))
        point = rendering.plane_to_lps(u_mm, v_mm, self.orientation, normal)
        self.state.show_readout(point)

    # ------------------------------------------------------------------ export
    def export_as_image(self, *args: object, **kwargs: object) -> object:
        """The view rendered into an image (Kivy's, with the scissor box lifted).

        Rendering into an offscreen buffer moves the view to the buffer's origin, where the
        window-pixel scissor box would cut it; the buffer's own size clips instead.
        """
        box = (self._scissor.x, self._scissor.y, self._scissor.width, self._scissor.height)
        self._scissor.x, self._scissor.y = 0, 0
        self._scissor.width = self._scissor.height = 1 << 15
        try:
            return super().export_as_image(*args, **kwargs)
        finally:
            self._scissor.x, self._scissor.y, self._scissor.width, self._scissor.height = box

    def export_png(self, path: str | os.PathLike[str]) -> Path:
        """Write the view as it is drawn to a PNG file, atomically (temporary file, then rename).

        Raises
        ------
        InputError
            If ``path`` does not end in ``.png`` or its folder does not exist.
        """
        target = Path(path)
        if target.suffix.lower() != ".png":
            raise InputError(f"{target}: a view is exported as PNG; use a .png file name")
        if not target.parent.is_dir():
            raise InputError(f"{target}: folder {target.parent} does not exist")
        self._refresh()
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.{id(self)}.tmp.png")
        try:
            self.export_to_png(str(tmp))
            if not tmp.is_file():
                raise InputError(f"{target}: the view could not be rendered to PNG")
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return target
