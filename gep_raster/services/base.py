"""The service interface: every regulating service is one module with a ``Config`` and a ``Service``.

A service declares the outputs it writes (:class:`OutputSpec`), the input blocks it needs
(core keys provided by the pipeline, see :data:`CORE_INPUTS`, plus its own rasters through
:meth:`ServiceBase.input_requests`), and computes one block with :meth:`ServiceBase.compute`,
a pure function of numpy arrays. Services run in registry order within a block and may read the
outputs of earlier services from ``shared`` (oxygen release reads the carbon flux).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..config import RunConfig
    from ..tables import Legend, PriceBook

#: Input blocks the pipeline provides on request (key -> meaning, dtype, unit)
#: input keys computed by the pipeline from the DEM (or the routing's pit-filled DEM), not read from a file
TERRAIN_KEYS = ("slope", "aspect_x", "slope_pct_filled", "relief", "dem")
#: input keys read from the routing raster (band order of gep_raster.terrain.hydro_units.route_to_raster)
ROUTING_PRODUCTS = ("upslope", "filled_dem", "flow_aspect", "stream")

CORE_INPUTS = {
    "lc": "land-cover class codes, int32, -1 = nodata",
    "precip": "annual precipitation P, float32 mm/a (inputs.precipitation)",
    "et": "actual ET (mm/a), or ET0 (mm/a) when inputs.et0 is configured (see BuildContext.et_is_et0)",
    "dem": "elevation, float32 m (inputs.dem)",
    "slope": "tan(slope) from the DEM, Horn 3x3 (map_overlap depth 1)",
    "aspect_x": "|sin a| + |cos a| from the DEM (Desmet & Govers x term)",
    "slope_pct_filled": "percent slope of the routing's pit-filled DEM (pygeoprocessing calculate_slope rule), float32",
    "relief": "local relief: max - min elevation of the DEM's 3x3 window, float32 m (RWEQ terrain roughness)",
    "upslope": "upslope cells including the cell, by the routing of the service (routing.route), float32",
    "flow_aspect": "flow-weighted aspect term x of the routing (InVEST SDR 3.9-3.13), float32",
    "stream": "stream cells of the routing (1 stream, 0 not), float32",
    "r": "RUSLE R raster (inputs.r_factor)",
    "k": "RUSLE K raster (inputs.k_factor)",
    "c": "RUSLE C raster (inputs.c_factor)",
    "p": "RUSLE P raster (inputs.p_factor)",
    "carbon_flux": "NEP or NPP raster in inputs.carbon.unit",
    "lc_alt": "alternate land cover (inputs.carbon.alternate_land_cover), int32",
}


@dataclass(frozen=True)
class OutputSpec:
    """One output raster of a run (``kind``: physical, value, gep_r, intermediate, diagnostic)."""

    key: str
    service: str
    kind: str
    unit: str
    description: str
    write: bool = True

    @property
    def path(self) -> str:
        folder = {"physical": "physical/", "value": "value/", "gep_r": "", "gep": "", "intermediate": "intermediate/",
                  "diagnostic": "diagnostic/"}[self.kind]
        return f"rasters/{folder}{self.key}.tif"


@dataclass(frozen=True)
class InputRequest:
    """A raster a service reads besides the core inputs: ``spec`` is a RasterInput/ClimateInput of its config."""

    config_key: str  # e.g. "services.climate_regulation.hot_days_raster" (for messages)
    spec: Any
    kind: str = "continuous"  # or "categorical"
    #: a layer computed from several rasters: ``stack`` lists (file, band) pairs read with the options of
    #: ``spec`` (nodata, scale, resampling) and ``reduce`` turns their (n, h, w) float32 block into the
    #: (h, w) layer (module-level function or functools.partial; see io_read.StackSource); ``label`` names it
    stack: list | None = None
    reduce: Any = None
    label: str = ""


@dataclass
class BuildContext:
    """What a service needs to configure itself."""

    cfg: "RunConfig"
    legend: "Legend"
    book: "PriceBook"
    cell_size: float
    geographic: bool
    #: area (m2) of each land-cover class over the whole reference grid (from the legend check pass)
    class_area_m2: dict = field(default_factory=dict)

    @property
    def et_is_et0(self) -> bool:
        return self.cfg.inputs.et0 is not None


class ServiceBase:
    """Base class of a regulating service.

    Subclasses set ``name`` and ``label`` and implement :meth:`configure` (fill ``luts``,
    ``scalars``, ``flags``, ``outputs``, ``note``; read prices with ``ctx.book.price`` so they are
    recorded), :meth:`input_keys` and :meth:`compute`. Objects must stay picklable (numpy arrays,
    floats, strings) because dask ships them to workers.
    """

    name: str = ""
    label: str = ""

    def __init__(self, ctx: BuildContext):
        self.luts: dict[str, np.ndarray] = {}
        self.scalars: dict[str, float] = {}
        self.flags: dict[str, Any] = {}
        self.outputs: list[OutputSpec] = []
        self.note: str = ""
        #: assumptions standing in for missing data or unverified formulas (listed in the manifest)
        self.assumptions: list[str] = []
        #: files the service reads itself (e.g. water-body polygons), for the input checksums
        self.files: list = []
        #: how the value raster is made from the physical rasters (:meth:`value_term`), manifest ``valuation``
        self.valuation: list[dict] = []
        self.configure(ctx)

    # -- to implement --------------------------------------------------------------------
    def configure(self, ctx: BuildContext) -> None:
        raise NotImplementedError

    def input_keys(self) -> list[str]:
        """Core input keys (:data:`CORE_INPUTS`) and own requested keys this service reads."""
        return ["lc"]

    def input_requests(self) -> dict[str, InputRequest]:
        """Own rasters (key -> request), opened by the pipeline on the reference grid."""
        return {}

    def compute(self, blocks: dict[str, np.ndarray], row_area_m2: np.ndarray, nodata: np.ndarray,
                shared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs of one block: every key of :attr:`outputs` (float32, NaN = nodata).

        ``nodata`` is True where the land cover is nodata or has no legend row; ``shared`` holds the
        outputs of services computed before this one in the same block."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------
    def value_term(self, physical_key: str, price_coefficients: dict[str, float], book: "PriceBook") -> float:
        """Declare one term of the service's valuation: value += Q(``physical_key``) × unit value, where
        unit value (yuan per physical unit) = Σ_k coefficient_k × price_k over the price keys given.

        Every value raster of the engine is linear in its prices (market value / replacement cost
        V = Σ_j Q_j × P_j, Garzê GEP 2010; MEE 2020 GEP guideline family), so these terms let a
        multi-year account (:mod:`gep_raster.analysis.series`) revalue a year's physical quantities at
        another year's prices. Recorded in the manifest (``valuation``).

        Parameters
        ----------
        physical_key : str
            A physical output of this service (e.g. ``air_purification_so2_t``).
        price_coefficients : dict
            price key (``prices.csv``) -> coefficient (physical parameter, e.g. λ/ρ for dredging), float.
        book : PriceBook
            The run's prices (moved to the accounting year when a price index is given).

        Returns
        -------
        float
            The unit value, yuan per unit of ``physical_key``.
        """
        terms = {k: float(c) for k, c in price_coefficients.items()}
        uv = float(sum(c * book.price(k) for k, c in terms.items()))
        self.valuation.append({"physical": physical_key, "value": self.value_key, "unit_value_yuan": uv,
                               "price_coefficients": terms})
        return uv

    @property
    def value_key(self) -> str:
        return f"{self.name}_yuan"

    @staticmethod
    def legend_columns(cfg: "RunConfig") -> dict[str, tuple]:
        """Legend columns this service needs: column -> (valid min, valid max, unit, meaning)."""
        return {}

    @staticmethod
    def check_config(cfg: "RunConfig") -> list[str]:
        """Cross-section checks of the run configuration (messages name the keys)."""
        return []
