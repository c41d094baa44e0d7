"""Growth, metabolism, gas transfer and pH of a T-cell culture in a rocking bag.

Protocol-free and device-free: a :class:`Culture` (the true state), the inputs
that drive it (:class:`Drive`) and :func:`integrate`, which moves the state on
a fixed time grid. :mod:`simulators.models.bioreactor` wraps it as a device.

Equations (time in hours, cell densities in cells/mL, V in mL):

- temperature and headspace CO2 relax to their setpoints (exact first order);
- growth ``mu = mu_max * lag(t) * f(T) * G/(Kg+G) * DO/(Ko+DO) * (1 - Xv/Xmax) * acid(pH)``:
  a logistic model with Monod limitation on glucose and O2 (domain.md 1.1); the
  lag counts from seeding (activated cells);
- glycolysis and growth slow below pH ~6.8 (half at 6.6), so lactate levels off;
- death ``kd = kd0 + lactate and ammonia Hill terms + starvation + hypoxia``;
  dead cells lyse slowly;
- glucose uptake follows Luedeking-Piret (growth-linked plus maintenance),
  lactate is made from glucose, ammonia is growth-linked plus maintenance;
- DO: ``dDO/dt = kLa (DO* - DO) - OUR``, kLa from rock rate, angle and fill;
- perfusion feeds fresh medium and draws the same flow through the bag's
  cell-retention filter, so it dilutes solutes but keeps the cells;
- pH comes from a charge balance: bicarbonate in equilibrium with the
  headspace CO2, a non-bicarbonate buffer, and the lactate the cells made.

Stiff terms (uptake near zero glucose or DO) use a linearised implicit step,
so a 60 s step stays stable and never drives a concentration below zero.
Numbers tagged [A] are modelling assumptions, as in domain.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flexctl.errors import OutOfRangeError

LACTATE_G_PER_MMOL = 0.09008  # lactic acid, 90.08 g/mol
MEDIUM_GLUCOSE_G_PER_L = 2.0  # RPMI-based T-cell medium [A]
MEDIUM_DO_PCT = 100.0  # fresh medium is air-saturated
FEED_TEMPERATURE_C = 22.0  # medium and inoculum come at room temperature [A]
PH_FRESH_AT_5PCT_CO2 = 7.35  # fresh medium under 5 % CO2, within 7.0-7.4 (domain.md 1.1)
TEMP_BAND_C = 1.0  # |T - SP| beyond this counts as off setpoint (see Culture.temp_off_h)
CO2_TAU_H = 0.2  # headspace gas exchange, ~12 min [A]

_CO2_PKA = 6.1  # carbonic acid / bicarbonate at 37 °C
_CO2_SOLUBILITY_MM_PER_MMHG = 0.0307  # at 37 °C
_DRY_GAS_MMHG = 760.0 - 47.0  # headspace minus water vapour at 37 °C
_AMBIENT_CO2_PCT = 0.04  # never less CO2 than room air
_BUFFER_MM = 20.0  # HEPES, phosphate and proteins [A]
_BUFFER_PKA = 7.3  # HEPES at 37 °C


@dataclass(frozen=True, slots=True)
class KineticParams:
    """Culture constants; every number is an assumption [A] unless noted."""

    # doubling 24-36 h after a 24-48 h lag (domain.md 1.1): with the Monod and
    # logistic factors this intrinsic 26 h gives 29-37 h in the standard culture
    mu_max_per_h: float = math.log(2.0) / 26.0
    lag_h: float = 40.0  # midpoint of the sigmoid lag: growth at 4 % by 24 h, 83 % by 48 h
    lag_width_h: float = 5.0
    x_max_per_ml: float = 5e7  # logistic capacity (>1e7/mL is reached, domain.md 1.1)
    k_glucose_g_per_l: float = 0.1
    k_do_pct: float = 5.0
    # glucose: ~5 pg/cell/h while dividing every ~28 h, lactate ~1.8 mol/mol
    cells_per_g_glucose: float = 6e9
    glucose_maint_g_per_cell_h: float = 1.0e-12
    k_glucose_maint_g_per_l: float = 0.05
    lactate_g_per_g_glucose: float = 0.9
    # ammonia from glutamine, mostly growth-linked
    cells_per_mmol_ammonia: float = 1.67e10
    ammonia_maint_mmol_per_cell_h: float = 1.0e-12
    # O2: 0.03 pmol/cell/h (activated T cells), saturation 0.2 mM at 37 °C
    o2_uptake_mol_per_cell_h: float = 3.0e-14
    o2_sat_mm: float = 0.20
    k_do_uptake_pct: float = 1.0
    # death and lysis
    kd0_per_h: float = 0.001
    kd_lactate_per_h: float = 0.03
    k_lactate_g_per_l: float = 2.2  # ~24 mM, lactate harms T cells above ~20 mM
    kd_ammonia_per_h: float = 0.02
    k_ammonia_mm: float = 5.0
    kd_starve_per_h: float = 0.008
    k_starve_g_per_l: float = 0.05
    kd_hypoxia_per_h: float = 0.02
    k_hypoxia_pct: float = 0.5
    lysis_per_h: float = 0.02
    # temperature: growth window around 37 °C, metabolism Q10 = 2
    growth_temp_width_c: float = 5.0
    q10: float = 2.0
    # acid stops glycolysis (and so growth): half at pH 6.6, so lactate levels off
    ph_half: float = 6.6
    ph_steepness: float = 4.0


class Culture:
    """The true state of the bag. Cells and solutes are zero when it is empty."""

    __slots__ = (
        "ammonia_mm",
        "co2_pct",
        "do_pct",
        "glucose_g_per_l",
        "lactate_g_per_l",
        "temp_off_h",
        "temperature_c",
        "time_h",
        "volume_ml",
        "xd_per_ml",
        "xv_per_ml",
    )

    def __init__(self, temperature_c: float, co2_pct: float) -> None:
        self.temperature_c = temperature_c
        self.co2_pct = co2_pct
        self.temp_off_h = 0.0  # how long |T - SP| > TEMP_BAND_C has lasted
        self.time_h = 0.0  # since seeding
        self.volume_ml = 0.0
        self.xv_per_ml = 0.0
        self.xd_per_ml = 0.0
        self.glucose_g_per_l = 0.0
        self.lactate_g_per_l = 0.0
        self.ammonia_mm = 0.0
        self.do_pct = 0.0

    @property
    def viability_pct(self) -> float:
        total = self.xv_per_ml + self.xd_per_ml
        return 100.0 * (self.xv_per_ml / total) if total > 0 else 0.0

    def inoculate(self, viable_cells: float, volume_ml: float, viability_pct: float) -> None:
        """Fill the empty bag with cells in fresh medium at room temperature."""
        self.volume_ml = volume_ml
        self.xv_per_ml = viable_cells / volume_ml
        self.xd_per_ml = self.xv_per_ml * (100.0 - viability_pct) / viability_pct
        self.glucose_g_per_l = MEDIUM_GLUCOSE_G_PER_L
        self.lactate_g_per_l = 0.0
        self.ammonia_mm = 0.0
        self.do_pct = MEDIUM_DO_PCT
        self.temperature_c = FEED_TEMPERATURE_C
        self.time_h = 0.0

    def add_medium(self, volume_ml: float) -> None:
        """Mix a bolus of fresh room-temperature medium into the culture."""
        old = self.volume_ml
        new = old + volume_ml
        keep = old / new
        fresh = volume_ml / new
        self.volume_ml = new
        self.xv_per_ml *= keep
        self.xd_per_ml *= keep
        self.glucose_g_per_l = self.glucose_g_per_l * keep + MEDIUM_GLUCOSE_G_PER_L * fresh
        self.lactate_g_per_l *= keep
        self.ammonia_mm *= keep
        self.do_pct = self.do_pct * keep + MEDIUM_DO_PCT * fresh
        self.temperature_c = self.temperature_c * keep + FEED_TEMPERATURE_C * fresh

    def remove(self, volume_ml: float) -> None:
        """Take well-mixed culture out (a sample); concentrations stay."""
        self.volume_ml = max(0.0, self.volume_ml - volume_ml)
        if self.volume_ml == 0.0:
            self.empty()

    def empty(self) -> None:
        """Drain everything; the tray keeps its temperature, the gas its CO2."""
        self.volume_ml = 0.0
        self.xv_per_ml = self.xd_per_ml = 0.0
        self.glucose_g_per_l = self.lactate_g_per_l = self.ammonia_mm = 0.0
        self.do_pct = 0.0
        self.time_h = 0.0


@dataclass(frozen=True, slots=True)
class Drive:
    """What the device imposes on the culture between two commands."""

    temperature_sp_c: float
    co2_sp_pct: float
    kla_per_h: float
    perfusion_ml_per_day: float


def kla_per_h(rock_rpm: float, angle_deg: float, volume_ml: float, bag_ml: float) -> float:
    """Volumetric O2 transfer coefficient of a rocking bag (surface aeration).

    5 /h at 15 rpm, 6° and 1 L in a 2 L bag [A]. The rock rate dominates and the
    angle matters little (domain.md 1.1), so the exponents are 1.0 and 0.3; a
    fuller bag has less surface per volume. A still bag keeps only diffusion and
    natural convection (0.05 /h).
    """
    fill = max(volume_ml / bag_ml, 0.05)
    fill_factor = math.sqrt(0.5 / fill)
    static = 0.05 * fill_factor
    if rock_rpm <= 0.0 or angle_deg <= 0.0:
        return static
    return static + 5.0 * (rock_rpm / 15.0) * math.pow(angle_deg / 6.0, 0.3) * fill_factor


def do_saturation_pct(co2_pct: float) -> float:
    """DO in % air saturation that the headspace gas (air plus CO2) supports."""
    return 100.0 - co2_pct


def temperature_tau_h(volume_ml: float) -> float:
    """Time constant of the heated tray and bag: 30 min for 1 L [A]."""
    return 0.25 + 0.25 * volume_ml / 1000.0


def _charge(ph: float, dissolved_co2_mm: float) -> float:
    """Bicarbonate plus dissociated buffer (mM) at a pH."""
    bicarbonate = dissolved_co2_mm * math.pow(10.0, ph - _CO2_PKA)
    ratio = math.pow(10.0, ph - _BUFFER_PKA)
    return bicarbonate + _BUFFER_MM * ratio / (1.0 + ratio)


def _dissolved_co2_mm(co2_pct: float) -> float:
    pct = max(co2_pct, _AMBIENT_CO2_PCT)
    return _CO2_SOLUBILITY_MM_PER_MMHG * _DRY_GAS_MMHG * pct / 100.0


# The medium's strong-ion excess, fixed so that fresh medium sits at 7.35 under 5 % CO2.
_STRONG_ION_MM = _charge(PH_FRESH_AT_5PCT_CO2, _dissolved_co2_mm(5.0))
_PH_RANGE = (5.0, 9.5)
_KA_CO2 = math.pow(10.0, -_CO2_PKA)
_KA_BUFFER = math.pow(10.0, -_BUFFER_PKA)


def ph(co2_pct: float, lactate_g_per_l: float) -> float:
    """pH from a charge balance: each lactate ion replaces bicarbonate or buffer base.

    With x = 10**pH the balance ``a x + B k x / (1 + k x) = S`` is a quadratic in x.
    Ammonia is left out: glutamine -> glutamate + NH4+ is charge-neutral.
    """
    s = _STRONG_ION_MM - lactate_g_per_l / LACTATE_G_PER_MMOL
    if s <= 0.0:
        return _PH_RANGE[0]
    a = _dissolved_co2_mm(co2_pct) * _KA_CO2
    k = _KA_BUFFER
    b = a + k * (_BUFFER_MM - s)
    root = math.sqrt(b * b + 4.0 * a * k * s)
    # the positive root, in the form that does not cancel
    x = 2.0 * s / (b + root) if b > 0.0 else (root - b) / (2.0 * a * k)
    return min(max(math.log10(x), _PH_RANGE[0]), _PH_RANGE[1])


def janas_perfusion_rate(vcd_per_ml: float, volume_ml: float = 1000.0) -> float:
    """Perfusion rate (mL/day) of the published schedule (Janas 2015, domain.md 1.1).

    For 1 L: below 2e6/mL 0, 2e6 up to 10e6 500, 10e6 to 15e6 750, above 15e6
    1000 mL/day; other volumes scale in proportion (same vessel volumes per day).
    """
    if not math.isfinite(vcd_per_ml) or vcd_per_ml < 0:
        raise OutOfRangeError(f"viable cell density must be >= 0, got {vcd_per_ml!r}")
    if not math.isfinite(volume_ml) or volume_ml <= 0:
        raise OutOfRangeError(f"volume must be > 0 mL, got {volume_ml!r}")
    if vcd_per_ml < 2e6:
        per_litre = 0.0
    elif vcd_per_ml < 10e6:
        per_litre = 500.0
    elif vcd_per_ml <= 15e6:
        per_litre = 750.0
    else:
        per_litre = 1000.0
    return per_litre * volume_ml / 1000.0


def growth_rate(p: KineticParams, c: Culture, acid: float) -> float:
    """Specific growth rate (1/h) before the glucose Monod term.

    Sigmoid lag after activation, a Gaussian window around 37 °C, Monod on DO,
    the logistic capacity, and ``acid`` (glycolysis slowed at low pH).
    """
    lag = 1.0 / (1.0 + math.exp((p.lag_h - c.time_h) / p.lag_width_h))
    dev = (c.temperature_c - 37.0) / p.growth_temp_width_c
    logistic = max(1.0 - c.xv_per_ml / p.x_max_per_ml, 0.0)
    do = c.do_pct
    return p.mu_max_per_h * lag * math.exp(-dev * dev) * logistic * do / (p.k_do_pct + do) * acid


def death_rate(p: KineticParams, c: Culture) -> float:
    """Specific death rate (1/h): basal, lactate, ammonia, starvation, hypoxia."""
    lactate = c.lactate_g_per_l / p.k_lactate_g_per_l
    lactate *= lactate * lactate  # Hill n = 3, squared below to n = 6: a sharp threshold
    lactate *= lactate
    ammonia = c.ammonia_mm / p.k_ammonia_mm
    ammonia *= ammonia
    starve = p.k_starve_g_per_l * p.k_starve_g_per_l
    glucose = c.glucose_g_per_l
    return (
        p.kd0_per_h
        + p.kd_lactate_per_h * lactate / (1.0 + lactate)
        + p.kd_ammonia_per_h * ammonia / (1.0 + ammonia)
        + p.kd_starve_per_h * starve / (starve + glucose * glucose)
        + p.kd_hypoxia_per_h * p.k_hypoxia_pct / (p.k_hypoxia_pct + c.do_pct)
    )


def _culture_step(c: Culture, p: KineticParams, kla: float, dilution: float, dt_h: float) -> None:
    """One step of cells and solutes at the step's new temperature and CO2."""
    c.time_h += dt_h
    acid = 1.0 / (
        1.0 + math.pow(10.0, p.ph_steepness * (p.ph_half - ph(c.co2_pct, c.lactate_g_per_l)))
    )
    mu_free = growth_rate(p, c, acid)
    kd = death_rate(p, c)
    metab = math.pow(p.q10, (c.temperature_c - 37.0) / 10.0)
    xv = c.xv_per_ml
    xv_l = xv * 1000.0  # cells per litre
    dt_d = dt_h * dilution  # fraction of the volume exchanged this step

    # glucose uptake = k_glc * glucose, solved implicitly for the new glucose
    glc = c.glucose_g_per_l
    k_glc = (
        xv_l
        * metab
        * acid
        * (
            mu_free / p.cells_per_g_glucose / (p.k_glucose_g_per_l + glc)
            + p.glucose_maint_g_per_cell_h / (p.k_glucose_maint_g_per_l + glc)
        )
    )
    glc = (glc + dt_d * MEDIUM_GLUCOSE_G_PER_L) / (1.0 + dt_d + dt_h * k_glc)
    c.glucose_g_per_l = glc
    made = dt_h * p.lactate_g_per_g_glucose * k_glc * glc
    c.lactate_g_per_l = (c.lactate_g_per_l + made) / (1.0 + dt_d)
    mu = mu_free * glc / (p.k_glucose_g_per_l + glc)
    ammonia = (
        dt_h * xv_l * metab * (mu / p.cells_per_mmol_ammonia + p.ammonia_maint_mmol_per_cell_h)
    )
    c.ammonia_mm = (c.ammonia_mm + ammonia) / (1.0 + dt_d)

    # O2: transfer in, uptake (Monod, implicit in DO) out, fresh medium in
    our = _our_per_cell(p) * xv * metab  # % air saturation per hour at DO >> K
    do = c.do_pct
    supply = dt_h * kla * do_saturation_pct(c.co2_pct) + dt_d * MEDIUM_DO_PCT
    c.do_pct = (do + supply) / (1.0 + dt_h * (kla + our / (p.k_do_uptake_pct + do)) + dt_d)

    # cells stay in the bag: the perfusion filter retains them
    c.xd_per_ml = (c.xd_per_ml + dt_h * kd * xv) / (1.0 + dt_h * p.lysis_per_h)
    c.xv_per_ml = xv * math.exp((mu - kd) * dt_h)


def _our_per_cell(p: KineticParams) -> float:
    """Maximal O2 uptake in % air saturation per hour per cell/mL."""
    return p.o2_uptake_mol_per_cell_h * 1000.0 / (p.o2_sat_mm / 1000.0) * 100.0


def integrate(c: Culture, u: Drive, p: KineticParams, steps: int, dt_h: float) -> None:
    """Advance ``c`` by ``steps`` fixed steps of ``dt_h`` hours under constant ``u``.

    Volume is constant here (perfusion feed equals harvest; boluses and samples
    are events between calls), so kLa, dilution and the thermal time constant are too.
    """
    sp_t, sp_co2 = u.temperature_sp_c, u.co2_sp_pct
    a_temp = math.exp(-dt_h / temperature_tau_h(c.volume_ml))
    a_co2 = math.exp(-dt_h / CO2_TAU_H)
    has_culture = c.volume_ml > 0.0
    dilution = u.perfusion_ml_per_day / 24.0 / c.volume_ml if has_culture else 0.0
    for _ in range(steps):
        # exact first-order steps for the tray and the gas mixer
        c.temperature_c = sp_t + (c.temperature_c - sp_t) * a_temp
        off = abs(c.temperature_c - sp_t) > TEMP_BAND_C
        c.temp_off_h = c.temp_off_h + dt_h if off else 0.0
        c.co2_pct = sp_co2 + (c.co2_pct - sp_co2) * a_co2
        if has_culture:
            _culture_step(c, p, u.kla_per_h, dilution, dt_h)
