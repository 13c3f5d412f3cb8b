"""The view-model shared by the slice views of one viewer: data shown, cursor, window/level.

A :class:`ViewerState` holds what the three :class:`~app.widgets.slice_view.SliceView` of a
viewer display: the CT, structure outlines, one dose overlay and beams (plain attributes, set
through the ``set_*`` methods, announced by the ``on_data`` event with the name of what changed),
and the interactive state as Kivy properties the views bind to: the cursor voxel, the window and
level, and the readout text under the mouse. Two states can be linked (the compare screen) so that
cursor and window/level follow each other.

The state never computes physics: dose arrays arrive computed, it only displays them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from kivy.event import EventDispatcher
from kivy.properties import ListProperty, NumericProperty, StringProperty
from numpy.typing import NDArray

from app import rendering
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.isodose import isodose_colours
from planning.patient import CtVolume, RoiMask

#: Window width and level (HU) of the presets.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (400.0, 40.0),
    "bone": (1800.0, 400.0),
    "lung": (1500.0, -600.0),
    "brain": (80.0, 40.0),
}
#: Narrowest window the right-drag can reach, HU.
MIN_WINDOW_HU = 1.0


@dataclass(frozen=True, eq=False)
class StructureOverlay:
    """A structure outline to draw.

    Attributes
    ----------
    name : str
        Unique within a viewer; the key of the visibility toggles.
    colour_rgb : (r, g, b) int 0..255
        RTSTRUCT ROI Display Color (or a default chosen by the caller).
    mask : RoiMask
        Voxels on the CT grid of the viewer's CT.
    """

    name: str
    colour_rgb: tuple[int, int, int]
    mask: RoiMask

    def __post_init__(self) -> None:
        if len(self.colour_rgb) != 3 or not all(0 <= int(c) <= 255 for c in self.colour_rgb):
            raise InputError(f"structure {self.name!r}: colour {self.colour_rgb} is not 3 x 0..255")


@dataclass(frozen=True, eq=False)
class DoseOverlay:
    """A dose-like cube shown as a colour wash with isodose lines.

    Attributes
    ----------
    dose : (nz, ny, nx) float32 array on ``grid``
        Values in ``unit`` (RBE-weighted dose, physical dose, LETd, RBE, % or a difference).
    grid : DoseGrid
        Its grid (usually coarser than the CT's), LPS.
    unit : str
        ``"Gy(RBE)"``, ``"Gy"``, ``"keV/µm"``, ``"%"`` or ``""`` (dimensionless, e.g. RBE).
    colormap : ``"dose"`` or ``"diverging"``
        ``"diverging"`` for differences: white at 0, symmetric scale.
    vmin, vmax : float
        Values of the first and last colour of the wash and legend.
    threshold : float
        Values below (magnitudes below, for ``"diverging"``) are not washed.
    opacity : float
        Wash alpha, 0..1.
    isodose_levels : tuple of float
        Isodose line values, in ``unit``.
    isodose_colours : tuple of (r, g, b), optional
        One per level; default red for the highest level, then orange, yellow, green, ...
    label : str
        What the cube is, e.g. ``"RBE-weighted dose (mMKM)"``.
    note : str
        A line or two for the colour legend, e.g. where a quantity is shown.
    scale_name : str
        What the values are when ``unit`` is ``""`` (``"RBE"``, ``"LEM/mMKM"``): the
        legend's title in place of a unit.
    shown_min, shown_max : float or None
        The lowest and highest value washed, when the colour scale may not span them (a
        quantity scaled to its percentiles): values beyond ``vmin``/``vmax`` take the end
        colours, and the legend marks them (an arrow at that end, with the value).
    """

    dose: NDArray[np.float32]
    grid: DoseGrid
    unit: str
    vmin: float
    vmax: float
    threshold: float = 0.0
    opacity: float = 0.45
    colormap: str = "dose"
    isodose_levels: tuple[float, ...] = ()
    isodose_colours: tuple[tuple[int, int, int], ...] | None = None
    label: str = ""
    note: str = ""
    scale_name: str = ""
    shown_min: float | None = None
    shown_max: float | None = None

    def __post_init__(self) -> None:
        dose = np.asarray(self.dose)
        if dose.shape != tuple(self.grid.shape):
            raise InputError(
                f"dose overlay {self.label!r}: cube shape {dose.shape} does not match its grid "
                f"{self.grid.shape}"
            )
        if dose.dtype != np.float32:
            object.__setattr__(self, "dose", dose.astype(np.float32))
        if self.colormap not in rendering.COLORMAPS:
            raise InputError(
                f"dose overlay {self.label!r}: colour map {self.colormap!r} is not one of "
                f"{', '.join(rendering.COLORMAPS)}"
            )
        if not (math.isfinite(self.vmin) and math.isfinite(self.vmax) and self.vmax > self.vmin):
            raise InputError(
                f"dose overlay {self.label!r}: colour scale {self.vmin} .. {self.vmax} needs "
                "finite vmin < vmax"
            )
        if not 0.0 <= self.opacity <= 1.0:
            raise InputError(f"dose overlay {self.label!r}: opacity {self.opacity} not in 0..1")
        if self.isodose_colours is not None and len(self.isodose_colours) != len(
            self.isodose_levels
        ):
            raise InputError(
                f"dose overlay {self.label!r}: {len(self.isodose_colours)} isodose colours for "
                f"{len(self.isodose_levels)} levels"
            )

    @property
    def level_colours(self) -> tuple[tuple[int, int, int], ...]:
        """The colour of each isodose level (given or default)."""
        if self.isodose_colours is not None:
            return self.isodose_colours
        return tuple(isodose_colours(self.isodose_levels))


@dataclass(frozen=True)
class BeamOverlay:
    """A beam's central axis drawn up to the isocentre.

    Attributes
    ----------
    label : str
        Beam name shown at the upstream end.
    isocenter_mm : (x, y, z)
        LPS, mm.
    direction_lps : (3,)
        Unit vector of travel, from the source towards the isocentre.
    colour_rgb : (r, g, b)
        0..255.
    """

    label: str
    isocenter_mm: tuple[float, float, float]
    direction_lps: tuple[float, float, float]
    colour_rgb: tuple[int, int, int] = field(default=(255, 255, 255))

    def __post_init__(self) -> None:
        n = math.sqrt(sum(float(c) ** 2 for c in self.direction_lps))
        if not math.isfinite(n) or abs(n - 1.0) > 1e-3:
            raise InputError(f"beam {self.label!r}: direction {self.direction_lps} is not a unit "
                             "vector")


class ViewerState(EventDispatcher):
    """Data and interactive state of one viewer (three orthogonal slice views).

    Properties
    ----------
    cursor_ijk : [k, j, i]
        CT voxel index ``(z, y, x)`` of the crosshair; each view shows the slice through it.
    window_hu, level_hu : float
        Grey-scale window width and centre.
    readout_text : str
        Position, HU and dose under the mouse, e.g. ``"x -12.0 y 30.5 z 4.0 mm | HU 35 |
        51.2 Gy(RBE)"``.

    Events
    ------
    on_data(what)
        After ``set_ct`` (``"ct"``), ``set_structures`` (``"structures"``), visibility changes
        (``"visibility"``), ``set_dose`` (``"dose"``) and ``set_beams`` (``"beams"``).
    on_fit_views()
        After :meth:`fit_views`: the views reset their zoom and pan.
    """

    WINDOW_PRESETS = WINDOW_PRESETS

    cursor_ijk = ListProperty([0, 0, 0])
    window_hu = NumericProperty(400.0)
    level_hu = NumericProperty(40.0)
    readout_text = StringProperty("")

    __events__ = ("on_data", "on_fit_views")

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.ct: CtVolume | None = None
        self.structures: tuple[StructureOverlay, ...] = ()
        self.visible_structures: set[str] = set()
        self.dose: DoseOverlay | None = None
        self.beams: tuple[BeamOverlay, ...] = ()
        self._links: list[ViewerState] = []
        self._readout_point: tuple[float, float, float] | None = None

    def on_data(self, what: str) -> None:
        """Default handler of the ``on_data`` event (views bind their own)."""

    def on_fit_views(self) -> None:
        """Default handler of the ``on_fit_views`` event (views bind their own)."""

    def fit_views(self) -> None:
        """Ask every view of this state to show the whole slice again (zoom 1, no pan)."""
        self.dispatch("on_fit_views")

    # ---------------------------------------------------------------- data
    def set_ct(self, ct: CtVolume) -> None:
        """Show a CT; the cursor moves to its centre. Structures, dose and beams are cleared."""
        self.ct = ct
        self.structures = ()
        self.visible_structures = set()
        self.dose = None
        self.beams = ()
        self._readout_point = None
        self.readout_text = ""  # the last patient's numbers must not stay under this one
        nz, ny, nx = ct.shape
        self.cursor_ijk = [nz // 2, ny // 2, nx // 2]
        self.dispatch("on_data", "ct")

    def set_structures(self, structures: Sequence[StructureOverlay]) -> None:
        """Structures to outline (all visible). Masks must be on the current CT's grid."""
        ct = self._require_ct("structures")
        names = [s.name for s in structures]
        if len(set(names)) != len(names):
            raise InputError(f"structure names must be unique in a viewer: {names}")
        for s in structures:
            if tuple(s.mask.grid_shape) != ct.shape:
                raise InputError(
                    f"structure {s.name!r}: mask grid {s.mask.grid_shape} is not the CT grid "
                    f"{ct.shape}"
                )
        self.structures = tuple(structures)
        self.visible_structures = set(names)
        self.dispatch("on_data", "structures")

    def set_structure_visible(self, name: str, visible: bool) -> None:
        """Show or hide the outline of structure ``name``."""
        if name not in {s.name for s in self.structures}:
            raise InputError(f"no structure named {name!r} in the viewer")
        if visible == (name in self.visible_structures):
            return
        if visible:
            self.visible_structures.add(name)
        else:
            self.visible_structures.discard(name)
        self.dispatch("on_data", "visibility")

    def set_dose(self, dose: DoseOverlay | None) -> None:
        """Show a dose overlay (or none)."""
        if dose is not None:
            self._require_ct("a dose overlay")
        self.dose = dose
        if self._readout_point is not None:  # the readout names what is shown now
            self.readout_text = self.readout_at(self._readout_point)
        self.dispatch("on_data", "dose")

    def set_beams(self, beams: Iterable[BeamOverlay]) -> None:
        """Beams to draw in every view."""
        self.beams = tuple(beams)
        self.dispatch("on_data", "beams")

    def _require_ct(self, what: str) -> CtVolume:
        if self.ct is None:
            raise InputError(f"cannot show {what} before a CT is loaded in the viewer")
        return self.ct

    # ---------------------------------------------------------------- cursor and W/L
    def set_cursor(self, k: int, j: int, i: int) -> None:
        """Move the crosshair to CT voxel ``(k, j, i)`` (clipped to the grid)."""
        if self.ct is None:
            return
        nz, ny, nx = self.ct.shape
        self.cursor_ijk = [
            min(max(int(k), 0), nz - 1),
            min(max(int(j), 0), ny - 1),
            min(max(int(i), 0), nx - 1),
        ]

    def set_slice(self, orientation: str, index: int) -> None:
        """Show slice ``index`` (clipped) in ``orientation``: moves that cursor component."""
        axis = rendering.NORMAL_AXIS[rendering.check_orientation(orientation)]
        cursor = list(self.cursor_ijk)
        cursor[axis] = int(index)
        self.set_cursor(*cursor)

    def set_window_level(self, window_hu: float, level_hu: float) -> None:
        """Set the grey-scale window width (at least :data:`MIN_WINDOW_HU`) and centre."""
        if not (math.isfinite(window_hu) and math.isfinite(level_hu)):
            raise InputError(f"window/level must be finite, got {window_hu} / {level_hu}")
        self.window_hu = max(float(window_hu), MIN_WINDOW_HU)
        self.level_hu = float(level_hu)

    def apply_preset(self, name: str) -> None:
        """Apply a :data:`WINDOW_PRESETS` entry."""
        try:
            window, level = WINDOW_PRESETS[name]
        except KeyError:
            raise InputError(
                f"window preset {name!r} is not one of {', '.join(WINDOW_PRESETS)}"
            ) from None
        self.set_window_level(window, level)

    # ---------------------------------------------------------------- linking
    def link(self, other: ViewerState) -> None:
        """Make cursor and window/level follow ``other`` and the other way round.

        ``other`` takes this state's current values. Linking is symmetric and idempotent.
        """
        if other is self or other in self._links:
            return
        self._links.append(other)
        other._links.append(self)
        self.bind(cursor_ijk=other._follow_cursor, window_hu=other._follow_window,
                  level_hu=other._follow_level)
        other.bind(cursor_ijk=self._follow_cursor, window_hu=self._follow_window,
                   level_hu=self._follow_level)
        other._follow_cursor(self, self.cursor_ijk)
        other.window_hu = self.window_hu
        other.level_hu = self.level_hu

    def unlink(self, other: ViewerState) -> None:
        """Undo :meth:`link`."""
        if other not in self._links:
            return
        self._links.remove(other)
        other._links.remove(self)
        self.unbind(cursor_ijk=other._follow_cursor, window_hu=other._follow_window,
                    level_hu=other._follow_level)
        other.unbind(cursor_ijk=self._follow_cursor, window_hu=self._follow_window,
                     level_hu=self._follow_level)

    def _follow_cursor(self, _source: ViewerState, cursor: Sequence[int]) -> None:
        self.set_cursor(*cursor)

    def _follow_window(self, _source: ViewerState, value: float) -> None:
        self.window_hu = value

    def _follow_level(self, _source: ViewerState, value: float) -> None:
        self.level_hu = value

    # ---------------------------------------------------------------- readout
    def show_readout(self, point_lps: Sequence[float]) -> None:
        """Show the readout of an LPS point (the mouse's); it is read again when the dose
        overlay changes, so its value and unit follow the quantity shown."""
        x, y, z = (float(v) for v in point_lps)
        self._readout_point = (x, y, z)
        self.readout_text = self.readout_at(self._readout_point)

    def readout_at(self, point_lps: Sequence[float]) -> str:
        """The readout text for an LPS point: position, HU of its voxel, dose there (if any)."""
        # + 0.0 turns a -0.0 into 0.0: "y -0.0" read as a sign where there is none.
        x, y, z = (round(float(v), 1) + 0.0 for v in point_lps)
        parts = [f"x {x:.1f} y {y:.1f} z {z:.1f} mm"]
        if self.ct is not None:
            voxel = rendering.nearest_voxel(self.ct, point_lps)
            if voxel is not None:
                parts.append(f"HU {float(self.ct.hu[voxel]):.0f}")
        if self.dose is not None:
            value = rendering.sample_trilinear(self.dose.dose, self.dose.grid, point_lps)
            if value is not None:
                parts.append(_quantity_text(self.dose, value))
        return " | ".join(parts)


def _quantity_text(overlay: DoseOverlay, value: float) -> str:
    """``"51.2 Gy(RBE)"``, ``"48.3 keV/µm"``; a dimensionless quantity by its name (``"RBE
    2.31"``); nothing shown (``"-"``) where a masked quantity is hidden."""
    if overlay.note and value < overlay.threshold:
        return f"{overlay.label} -"
    number = f"{value:.{_decimals(overlay.vmax - overlay.vmin)}f}"
    return f"{number} {overlay.unit}" if overlay.unit else f"{overlay.label} {number}"


def _decimals(span: float) -> int:
    """Decimals that show about three significant digits of a value on a scale of ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 2
    return int(min(max(2 - math.floor(math.log10(span)), 0), 4))
