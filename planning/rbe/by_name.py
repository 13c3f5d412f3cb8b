"""RBE models by the names the CLI, the GUI and plan files use."""

from __future__ import annotations

from planning.errors import InputError
from planning.rbe.lem import LemModel, parse_tissue
from planning.rbe.mkm import MkmModel
from planning.rbe.models import ConstantRbe, PhysicalDose, RbeModel

#: Model names accepted by :func:`rbe_model_by_name`.
MODEL_NAMES = ("mkm", "lem1", "const", "physical")


def rbe_model_by_name(name: str, tissue: str | None = None,
                      constant_rbe: float | None = None) -> RbeModel:
    """An RBE model by name: ``mkm``, ``lem1``, ``const`` or ``physical``.

    ``tissue`` (LEM I) is a tissue class name (chordoma, hsg, v79) or ``alpha_x,beta_x,D_t`` in
    1/Gy, 1/Gy^2 and Gy, optionally with ``:averaged`` (default) or ``:central`` (the rapid
    scheme, see :mod:`planning.rbe.lem`); ``constant_rbe`` is the value of ``const``.

    Raises
    ------
    InputError
        For an unknown name, a bad tissue, or ``const`` without its value.
    """
    key = name.strip().lower()
    if key == "mkm":
        return MkmModel()
    if key == "lem1":
        return LemModel(parse_tissue(tissue)) if tissue else LemModel()
    if key == "const":
        if constant_rbe is None:
            raise InputError("a constant RBE model needs its value (there is no accepted "
                             "constant RBE for carbon ions)")
        return ConstantRbe(constant_rbe)
    if key == "physical":
        return PhysicalDose()
    raise InputError(f"unknown RBE model {name!r}; choose {', '.join(MODEL_NAMES)}")
