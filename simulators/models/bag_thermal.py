"""Enthalpy of a cryobag: a DMSO cell suspension that freezes over a range.

One lumped node per bag, tracked by its enthalpy ``H`` (J, zero for liquid at
the melting point). Below the melting point ``Tm`` the bag holds ice and a
concentrated solution in equilibrium; the freezable water that is ice follows
the ideal freezing-point depression of the remaining solution,
``f(T) = 1 - Tm / T`` (T < Tm < 0 in °C), so most latent heat is exchanged
just below ``Tm`` (the plateau of a thaw, the slow start of freezing) and the
rest spread down to the cold end. A liquid that has not nucleated stays on the
supercooled branch (no ice) until the freezer twin decides it nucleates.

Numbers [A] unless noted: Tm -3 °C for 5-10 % DMSO (domain.md 1.3/1.4:
-2 to -4 °C); latent heat 334 J/g water (domain.md 1.3); water is 85 % of the
mass; density 1.05 g/mL; specific heat 3.7 J/(g K) liquid, 2.0 J/(g K) frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LATENT_J_PER_G = 334.0  # domain.md 1.3
MELTING_POINT_C = -3.0  # domain.md 1.3/1.4: about -2 to -4 °C for 5-10 % DMSO
WATER_FRACTION = 0.85
DENSITY_G_PER_ML = 1.05
C_LIQUID = 3.7  # J/(g K)
C_FROZEN = 2.0  # J/(g K)


@dataclass(frozen=True)
class BagThermal:
    """Thermal properties of one bag of ``volume_ml``; pure functions of enthalpy."""

    volume_ml: float
    melting_point_c: float = MELTING_POINT_C

    @property
    def mass_g(self) -> float:
        return self.volume_ml * DENSITY_G_PER_ML

    @property
    def liquid_capacity(self) -> float:
        """Heat capacity of the liquid bag, J/K."""
        return self.mass_g * C_LIQUID

    @property
    def latent_j(self) -> float:
        """Latent heat of all freezable water, J."""
        return self.mass_g * WATER_FRACTION * LATENT_J_PER_G

    def enthalpy(self, temperature_c: float, *, equilibrium: bool) -> float:
        """Enthalpy (J) at a temperature, on the equilibrium or supercooled branch."""
        tm = self.melting_point_c
        if temperature_c >= tm or not equilibrium:
            return self.mass_g * C_LIQUID * (temperature_c - tm)
        ice = self.ice_fraction(temperature_c)
        return self.mass_g * (
            C_FROZEN * (temperature_c - tm) - WATER_FRACTION * LATENT_J_PER_G * ice
        )

    def temperature(self, enthalpy_j: float, *, equilibrium: bool) -> float:
        """Temperature (°C) of a bag with this enthalpy (inverse of :meth:`enthalpy`)."""
        tm = self.melting_point_c
        h = enthalpy_j / self.mass_g
        if h >= 0.0 or not equilibrium:
            return tm + h / C_LIQUID
        # h = c (T - Tm) - wL (1 - Tm/T)  =>  c T^2 - (c Tm + wL + h) T + wL Tm = 0
        wl = WATER_FRACTION * LATENT_J_PER_G
        b = C_FROZEN * tm + wl + h
        root = math.sqrt(b * b - 4.0 * C_FROZEN * wl * tm)
        # the negative root, in the form that avoids cancellation for either sign of b
        if b > 0.0:
            return 2.0 * wl * tm / (b + root)
        return (b - root) / (2.0 * C_FROZEN)

    def ice_fraction(self, temperature_c: float) -> float:
        """Fraction of the freezable water that is ice, in equilibrium."""
        tm = self.melting_point_c
        if temperature_c >= tm:
            return 0.0
        return 1.0 - tm / temperature_c
