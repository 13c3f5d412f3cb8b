"""Modified microdosimetric kinetic model (mMKM) and the NIRS/QST clinical dose.

Model (Inaniwa et al. 2010, PMB 55:6721, "Treatment planning for a scanned carbon beam with a
modified microdosimetric kinetic model"; saturation correction after Kase et al. 2008, PMB
53:37):

- the cell nucleus (radius R_n) is divided into domains (radius r_d); an ion passing a domain
  at impact parameter b deposits the specific energy z_d(b), the Kiefer–Chatterjee local dose
  averaged over the domain cross-section (:mod:`planning.rbe.track`);
- saturation: z'(b) = z0 sqrt(1 - exp(-(z_d/z0)^2)) with
  z0 = (R_n/r_d)^2 / sqrt(beta (1 + (R_n/r_d)^2))  (48.98 Gy for HSG; PHYSICS.md);
- saturation-corrected dose-mean specific energy of one ion
  z1D* = integral z'(b)^2 2 pi b db / integral z_d(b) 2 pi b db  (Gy);
- alpha = alpha0 + beta z1D*, beta constant; in a mixed field z1D* is dose-averaged.

HSG parameters (Inaniwa et al. 2010): alpha0 = 0.172 /Gy, beta = 0.0615 /Gy^2, r_d = 0.32 um,
R_n = 3.9 um.

Clinical dose (Inaniwa et al. 2015, PMB 60:3271, "Reformulation of a clinical-dose system for
carbon-ion radiotherapy treatment planning at the National Institute of Radiological Sciences,
Japan"): D_clin = F_clin x D_bio, F_clin = 2.41, where D_bio is the dose of the reference
radiation that gives the same HSG survival as the ion field *at the voxel's actual dose*
(not at a fixed survival level):

    alpha_r D_bio + beta_r D_bio^2 = (alpha0 + beta z1D*_mix) D + beta D^2.

Reference radiation alpha_r = 0.764 /Gy, beta_r = 0.0615 /Gy^2 (Inaniwa et al. 2015, as recalled
by the IonPlan authors; neither that paper nor the Radiation 2025, 5(1):2 account could be read
in full while writing this module, so the values are marked **unverified**). They are
consistent with the reference radiation being the HSG response at the centre of the NIRS 6 cm
SOBP: this module gives alpha0 + beta z1D*_mix = 0.761 /Gy there for the generic machine, so
the clinical RBE at that point is F_clin = 2.41 at every dose level. Both are parameters of
:class:`MkmModel` and can be changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from kernels.backend import array_namespace
from planning.errors import InputError
from planning.rbe.models import (
    FloatArray,
    ParticleTable,
    RbeGradient,
    RbeModel,
    let_table_kev_um,
    lq_effect_to_dose,
    validate_particle_grid,
)
from planning.rbe.track import impact_grid, kiefer_chatterjee, target_average


def saturation_parameter_gy(beta_gy2: float, domain_radius_um: float,
                            nucleus_radius_um: float) -> float:
    """Saturation parameter z0 = (R_n/r_d)^2 / sqrt(beta (1 + (R_n/r_d)^2)), Gy (Kase 2008)."""
    ratio2 = (nucleus_radius_um / domain_radius_um) ** 2
    return float(ratio2 / np.sqrt(beta_gy2 * (1.0 + ratio2)))


def z1d_star_gy(species_z: ArrayLike, energies_mev_u: ArrayLike, let_kev_um: ArrayLike, *,
                beta_gy2: float, domain_radius_um: float, nucleus_radius_um: float) -> FloatArray:
    """Saturation-corrected dose-mean specific energy z1D* of single ions, Gy.

    Parameters
    ----------
    species_z, energies_mev_u, let_kev_um : array_like, broadcast to a common shape
        Charge number, kinetic energy per nucleon (MeV/u) and LET in water (keV/um).
    beta_gy2, domain_radius_um, nucleus_radius_um : float
        mMKM parameters (HSG: 0.0615 /Gy^2, 0.32 um, 3.9 um).

    Returns
    -------
    ndarray
        z1D* in Gy with the broadcast shape of the inputs.

    Notes
    -----
    Both integrals over the impact parameter use the same quadrature (about 180 nodes clustered
    at the domain edge, 240 logarithmic radius cells), so z1D* tends exactly to z1D at low LET;
    the denominator equals 0.1602 LET Gy um^2 to about 0.2 %.
    """
    z, e, let = np.broadcast_arrays(np.asarray(species_z, dtype=np.float64),
                                    np.asarray(energies_mev_u, dtype=np.float64),
                                    np.asarray(let_kev_um, dtype=np.float64))
    shape = z.shape
    z0 = saturation_parameter_gy(beta_gy2, domain_radius_um, nucleus_radius_um)
    track = kiefer_chatterjee(z.ravel(), e.ravel(), let.ravel())
    grid = impact_grid(track, domain_radius_um)
    z_d = target_average(track, domain_radius_um, grid, lambda d: d)
    z_sat = z0 * np.sqrt(-np.expm1(-((z_d / z0) ** 2)))
    num = np.sum(z_sat**2 * grid.weight_um2, axis=1)
    den = np.sum(z_d * grid.weight_um2, axis=1)
    return np.asarray(num / den).reshape(shape)


def clinical_dose_gradient(dose_gy: Any, z_dose_sum_gy2: Any, *, alpha0_gy: float,
                           beta_gy2: float, alpha_ref_gy: float, beta_ref_gy2: float,
                           f_clin: float) -> RbeGradient:
    """NIRS clinical dose and its derivatives from D and Z = sum_i d_i z1D*_i (per voxel).

    eps = alpha0 D + beta Z + beta D^2 (= -ln S_HSG), D_bio from
    alpha_r D_bio + beta_r D_bio^2 = eps, D_clin = F_clin D_bio;
    dD_clin/dD = F_clin (alpha0 + 2 beta D) / r, dD_clin/dZ = F_clin beta / r with
    r = sqrt(alpha_r^2 + 4 beta_r eps).

    Parameters
    ----------
    dose_gy : array
        Physical dose per fraction, Gy.
    z_dose_sum_gy2 : array
        Dose-weighted sum of z1D*, Gy^2 (the dose-averaged z1D* times the dose).
    """
    xp = array_namespace(dose_gy, z_dose_sum_gy2)
    eps = alpha0_gy * dose_gy + beta_gy2 * z_dose_sum_gy2 + beta_gy2 * dose_gy * dose_gy
    d_bio, d_bio_d_eps = lq_effect_to_dose(eps, alpha_ref_gy, beta_ref_gy2, xp)
    return RbeGradient(
        dose_gy_rbe=f_clin * d_bio,
        d_dose=f_clin * d_bio_d_eps * (alpha0_gy + 2.0 * beta_gy2 * dose_gy),
        d_sums=(f_clin * beta_gy2 * d_bio_d_eps,),
    )


@dataclass(frozen=True)
class MkmModel(RbeModel):
    """mMKM with the NIRS/QST clinical dose (see the module docstring for formulas, sources).

    Parameters
    ----------
    cell_line : str
        Name of the parameter set (informational).
    alpha0_gy, beta_gy2 : float
        mMKM alpha0 (1/Gy) and beta (1/Gy^2); HSG 0.172 and 0.0615 (Inaniwa 2010).
    domain_radius_um, nucleus_radius_um : float
        Domain and nucleus radii, um; HSG 0.32 and 3.9 (Inaniwa 2010).
    f_clin : float
        Clinical scaling factor, 2.41 (Inaniwa 2015).
    alpha_ref_gy, beta_ref_gy2 : float
        LQ parameters of the reference radiation defining D_bio; 0.764 /Gy and 0.0615 /Gy^2
        (Inaniwa 2015; unverified, see the module docstring).
    """

    cell_line: str = "HSG"
    alpha0_gy: float = 0.172
    beta_gy2: float = 0.0615
    domain_radius_um: float = 0.32
    nucleus_radius_um: float = 3.9
    f_clin: float = 2.41
    alpha_ref_gy: float = 0.764
    beta_ref_gy2: float = 0.0615

    name: ClassVar[str] = "mMKM"
    quantity_names: ClassVar[tuple[str, ...]] = ("z1d_star_gy",)

    def __post_init__(self) -> None:
        for field_name in ("alpha0_gy", "beta_gy2", "domain_radius_um", "nucleus_radius_um",
                           "f_clin", "alpha_ref_gy"):
            value = getattr(self, field_name)
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"mMKM parameter {field_name} must be finite and > 0; "
                                 f"got {value!r}")
        if not (np.isfinite(self.beta_ref_gy2) and self.beta_ref_gy2 >= 0):
            raise InputError(f"mMKM parameter beta_ref_gy2 must be >= 0; got "
                             f"{self.beta_ref_gy2!r}")
        if self.nucleus_radius_um <= self.domain_radius_um:
            raise InputError("mMKM nucleus_radius_um must exceed domain_radius_um")

    @property
    def z0_gy(self) -> float:
        """Saturation parameter z0, Gy."""
        return saturation_parameter_gy(self.beta_gy2, self.domain_radius_um,
                                       self.nucleus_radius_um)

    def particle_tables(self, species_z: ArrayLike, energies_mev_u: ArrayLike, *,
                        stopping_source: str = "mstar_3_12") -> ParticleTable:
        """z1D* (Gy) of each species at each energy, on the LET of ``stopping_source``."""
        z, e = validate_particle_grid(species_z, energies_mev_u)
        let = let_table_kev_um(z, e, stopping_source)
        zz = np.broadcast_to(z[:, None], let.shape)
        ee = np.broadcast_to(e[None, :], let.shape)
        z1d = z1d_star_gy(zz, ee, let, beta_gy2=self.beta_gy2,
                          domain_radius_um=self.domain_radius_um,
                          nucleus_radius_um=self.nucleus_radius_um)
        return ParticleTable(self.name, self.quantity_names, z, e, let, (z1d,))

    def lq_parameters(self, table: ParticleTable) -> tuple[FloatArray, FloatArray]:
        """alpha = alpha0 + beta z1D* (1/Gy) and the constant beta (1/Gy^2)."""
        (z1d,) = table.quantities
        return self.alpha0_gy + self.beta_gy2 * z1d, np.full_like(z1d, self.beta_gy2)

    def rbe_weighted_dose_from_sums(self, dose_gy: Any, sums: tuple[Any, ...]) -> Any:
        """Clinical dose D_clin (Gy(RBE)) from D and (sum d_i z1D*_i,)."""
        return self.rbe_weighted_dose_gradient(dose_gy, sums).dose_gy_rbe

    def rbe_weighted_dose_gradient(self, dose_gy: Any, sums: tuple[Any, ...]) -> RbeGradient:
        self._check_sums(sums)
        return clinical_dose_gradient(dose_gy, sums[0], alpha0_gy=self.alpha0_gy,
                                      beta_gy2=self.beta_gy2, alpha_ref_gy=self.alpha_ref_gy,
                                      beta_ref_gy2=self.beta_ref_gy2, f_clin=self.f_clin)

    def biological_dose(self, dose_gy: Any, z1d_mix_gy: Any) -> Any:
        """HSG-equivalent dose of the reference radiation D_bio = D_clin / F_clin, Gy."""
        return self.rbe_weighted_dose(dose_gy, (z1d_mix_gy,)) / self.f_clin

    def describe(self) -> str:
        return (f"mMKM {self.cell_line} a0={self.alpha0_gy:g} b={self.beta_gy2:g} "
                f"rd={self.domain_radius_um:g}um Rn={self.nucleus_radius_um:g}um "
                f"Fclin={self.f_clin:g} ar={self.alpha_ref_gy:g} br={self.beta_ref_gy2:g}")
