"""Coordinate transforms on known points (IEC 61217 conventions, HFS patient, LPS)."""

import numpy as np
import pytest

from planning.geometry import (
    beam_frame,
    bev_to_lps,
    index_to_lps,
    lps_to_bev,
    lps_to_index,
    voxel_centers_lps,
)

# Gantry angle -> direction of travel in LPS for an HFS patient at couch 0.
KNOWN_DIRECTIONS = {
    0.0: (0.0, 1.0, 0.0),  # from anterior, going posterior
    90.0: (-1.0, 0.0, 0.0),  # source at the patient's left, going right
    180.0: (0.0, -1.0, 0.0),  # from posterior
    270.0: (1.0, 0.0, 0.0),  # from the patient's right, going left
}


@pytest.mark.parametrize("gantry", sorted(KNOWN_DIRECTIONS))
def test_beam_direction_at_cardinal_gantry_angles(gantry):
    frame = beam_frame(gantry, 0.0)
    np.testing.assert_allclose(frame.direction, KNOWN_DIRECTIONS[gantry], atol=1e-12)


def test_lateral_axes_at_gantry_0_and_90():
    f0 = beam_frame(0.0, 0.0)
    np.testing.assert_allclose(f0.u_axis, (1, 0, 0), atol=1e-12)  # IEC X = patient left
    np.testing.assert_allclose(f0.v_axis, (0, 0, 1), atol=1e-12)  # IEC Y = superior (HFS)
    f90 = beam_frame(90.0, 0.0)
    np.testing.assert_allclose(f90.u_axis, (0, 1, 0), atol=1e-12)  # X_g = -Z_f = posterior
    np.testing.assert_allclose(f90.v_axis, (0, 0, 1), atol=1e-12)


def test_couch_90_turns_lateral_beam_towards_the_head():
    # Couch +90 (counter-clockwise from above) puts the HFS patient's head at -X_f; a gantry-90
    # beam travelling to -X_f then travels from the feet towards the head: +z in LPS.
    frame = beam_frame(90.0, 90.0)
    np.testing.assert_allclose(frame.direction, (0, 0, 1), atol=1e-12)


def test_couch_rotation_leaves_vertical_beam_and_turns_its_lateral_axis():
    frame = beam_frame(0.0, 90.0)
    np.testing.assert_allclose(frame.direction, (0, 1, 0), atol=1e-12)
    np.testing.assert_allclose(frame.u_axis, (0, 0, -1), atol=1e-12)


@pytest.mark.parametrize("gantry,couch", [(0, 0), (33, 0), (127, 45), (250, -80), (359, 271)])
def test_frames_are_orthonormal(gantry, couch):
    m = beam_frame(gantry, couch).matrix
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)


def test_lps_to_bev_known_points():
    iso = np.array([10.0, 20.0, 30.0])
    f0 = beam_frame(0.0, 0.0)
    pts = iso + np.array([[0.0, -50.0, 0.0],  # 50 mm anterior: upstream
                          [5.0, 0.0, 7.0],  # left and superior: u = 5, v = 7
                          [0.0, 40.0, 0.0]])  # posterior: downstream
    np.testing.assert_allclose(lps_to_bev(pts, iso, f0), [[0, 0, -50], [5, 7, 0], [0, 0, 40]],
                               atol=1e-12)
    f90 = beam_frame(90.0, 0.0)
    left = iso + np.array([[50.0, 0.0, 0.0]])  # the patient's left faces the source
    np.testing.assert_allclose(lps_to_bev(left, iso, f90), [[0, 0, -50]], atol=1e-12)


def test_bev_roundtrip():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(20, 3)) * 100
    frame = beam_frame(123.0, 17.0)
    iso = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(bev_to_lps(lps_to_bev(pts, iso, frame), iso, frame), pts,
                               atol=1e-9)


def test_voxel_index_to_lps_known_voxel():
    spacing_zyx = (2.5, 3.0, 1.5)
    origin_xyz = (-10.0, -20.0, -30.0)
    p = index_to_lps([[2, 1, 4]], spacing_zyx, origin_xyz)  # (k, j, i)
    np.testing.assert_allclose(p, [[-10 + 4 * 1.5, -20 + 3.0, -30 + 2 * 2.5]])
    np.testing.assert_allclose(lps_to_index(p, spacing_zyx, origin_xyz), [[2, 1, 4]])


def test_voxel_centers_follow_c_order():
    c = voxel_centers_lps((2, 3, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert c.shape == (24, 3)
    np.testing.assert_allclose(c[1], (1, 0, 0))  # x fastest
    np.testing.assert_allclose(c[4], (0, 1, 0))
    np.testing.assert_allclose(c[12], (0, 0, 1))
    np.testing.assert_allclose(voxel_centers_lps((2, 3, 4), (1, 1, 1), (0, 0, 0), [13]), [c[13]])


@pytest.mark.parametrize(
    ("position", "gantry", "direction"),
    [
        # Gantry 0 shoots down from the ceiling: into the anterior of a supine patient,
        # into the posterior of a prone one.
        ("HFS", 0.0, (0, 1, 0)),
        ("HFP", 0.0, (0, -1, 0)),
        ("FFS", 0.0, (0, 1, 0)),
        ("FFP", 0.0, (0, -1, 0)),
        # Gantry 90: source on the room's X_f side (right of an observer at the couch foot
        # looking at the gantry): the patient's left for HFS and FFP, right for HFP and FFS.
        ("HFS", 90.0, (-1, 0, 0)),
        ("HFP", 90.0, (1, 0, 0)),
        ("FFS", 90.0, (1, 0, 0)),
        ("FFP", 90.0, (-1, 0, 0)),
    ],
)
def test_beam_direction_for_each_patient_position(position, gantry, direction):
    frame = beam_frame(gantry, 0.0, position)
    np.testing.assert_allclose(frame.direction, direction, atol=1e-12)
    # The BEV axes stay orthonormal and right-handed with the beam: u x v = -direction.
    np.testing.assert_allclose(np.cross(frame.u_axis, frame.v_axis), -frame.direction,
                               atol=1e-12)


def test_unknown_patient_position_is_rejected():
    with pytest.raises(ValueError, match="LFS"):
        beam_frame(0.0, 0.0, "LFS")
