"""ServiceModel: the enabled services of a run, computed together block by block.

:meth:`ServiceModel.compute_block` turns the input blocks of one chunk into every output block
of that chunk (all services in one pass, in registry order). The same function runs on whole
numpy arrays (:meth:`compute_numpy`) and on dask arrays (:meth:`compute_dask`: ``map_blocks``
over all inputs, with slope and aspect from ``map_overlap`` of depth 1 for the 3×3 Horn window),
so the numpy path and the dask path give identical results for any chunking.
GEP-R = Σ of the services' value rasters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import faults
from ..errors import ConfigError
from .base import TERRAIN_KEYS, BuildContext, InputRequest, OutputSpec, ServiceBase
from .registry import REGISTRY




@dataclass
class ServiceModel:
    """The enabled services of a run (registry order), their outputs and the legend-defined mask.

    Build with :meth:`from_config`; compute with :meth:`compute_block` (numpy) or :meth:`compute_dask`."""

    services: list[ServiceBase]
    outputs: list[OutputSpec]
    defined_lut: np.ndarray

    @classmethod
    def from_config(cls, cfg, legend, book, *, cell_size: float, geographic: bool,
                    class_area_m2: dict | None = None) -> "ServiceModel":
        """Configure every enabled service. Raises ConfigError/TableError/CRSError naming the key.

        ``class_area_m2``: area of each land-cover class over the grid (m2), for services whose
        rules need regional totals (e.g. an emissions cap spread in proportion to capacity)."""
        ctx = BuildContext(cfg, legend, book, float(cell_size), bool(geographic), dict(class_area_m2 or {}))
        services = [REGISTRY[name].Service(ctx) for name in cfg.services.enabled()]
        if not services:
            raise ConfigError("services: every service is disabled; enable at least one")
        outputs = [o for s in services for o in s.outputs]
        outputs.append(OutputSpec("gep_r_yuan", "gep_r", "gep_r", "yuan/a per pixel",
                                  "GEP-R: sum of the regulating-service values, yuan per pixel per year"))
        keys = [o.key for o in outputs]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"internal: duplicate output keys {keys}")
        n = int(legend.codes.max()) + 2
        defined = np.full(n, np.nan, np.float32)
        defined[legend.codes] = 1.0
        return cls(services, outputs, defined)

    # ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    @property
    def notes(self) -> dict[str, str]:
        return {s.name: s.note for s in self.services}

    @property
    def valuation(self) -> dict[str, list[dict]]:
        """Per service, the terms its value raster is made of (:meth:`ServiceBase.value_term`): value =
        Σ_terms Q(physical) × Σ_k coefficient_k × price_k; manifest ``valuation``."""
        return {s.name: list(s.valuation) for s in self.services}

    @property
    def output_keys(self) -> list[str]:
        return [o.key for o in self.outputs]

    def service(self, name: str) -> ServiceBase:
        return next(s for s in self.services if s.name == name)

    def input_keys(self) -> list[str]:
        """Input block keys of all services (core keys and own requests), without duplicates."""
        keys: list[str] = []
        for s in self.services:
            for k in s.input_keys():
                if k not in keys:
                    keys.append(k)
        return keys

    def input_requests(self) -> dict[str, InputRequest]:
        req: dict[str, InputRequest] = {}
        for s in self.services:
            req.update(s.input_requests())
        return req

    def needs_terrain(self) -> bool:
        return bool(set(TERRAIN_KEYS) & set(self.input_keys()))

    def routing_request(self) -> tuple[str, dict] | None:
        """The flow routing the services need, ``(method, options)`` of :func:`gep_raster.terrain.routing.route`, or None.

        Raises ValueError when two services ask for different routings (one routing per run)."""
        reqs = {(s.routing, tuple(sorted((getattr(s, "routing_options", {}) or {}).items())))
                for s in self.services if getattr(s, "routing", None)}
        if not reqs:
            return None
        if len(reqs) > 1:
            raise ValueError(f"services ask for different flow routings {sorted(reqs)}; one routing per run")
        method, opts = next(iter(reqs))
        return method, dict(opts)

    def needs_routing(self) -> bool:
        return self.routing_request() is not None

    @property
    def assumptions(self) -> list[str]:
        """Assumptions the services declare (constants standing in for missing data, [U] formulas)."""
        return [a for s in self.services for a in [*s.assumptions, *s.flags.get("assumptions", [])]]

    def compute_block(self, blocks: dict[str, np.ndarray], row_area_m2: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs of one block.

        Parameters
        ----------
        blocks : dict of str -> ndarray (h, w)
            Every key of :meth:`input_keys`: ``lc`` int32 (-1 nodata), continuous inputs float32 with
            NaN nodata (units in :data:`gep_raster.services.base.CORE_INPUTS`).
        row_area_m2 : float64 (h,)
            Pixel area per row of the block, m2.

        Returns
        -------
        dict of str -> float32 (h, w)
            One array per :attr:`output_keys` entry (units in :attr:`outputs`); NaN = nodata.
        """
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        lc = blocks["lc"]
        nodata = (lc < 0) | ~np.isfinite(apply_lut(lc, self.defined_lut))
        shared: dict[str, np.ndarray] = {}
        values = []
        for s in self.services:
            res = s.compute(blocks, row_area_m2, nodata, shared)
            shared.update(res)
            values.append(res[s.value_key])
        shared["gep_r_yuan"] = linear_value(np.stack(values), [1.0] * len(values))
        return {k: shared[k] for k in self.output_keys}

    # ---------------------------------------------------------------------------------
    def terrain_numpy(self, dem: np.ndarray, res: tuple[float, float], filled_dem: np.ndarray | None = None
                      ) -> dict[str, np.ndarray]:
        """Whole-array terrain terms the services need (keys of :data:`TERRAIN_KEYS` in :meth:`input_keys`)."""
        from ..kernels.terrain import relief_kernel, slope_aspect_kernel, slope_percent_invest_kernel

        keys = set(self.input_keys())
        out = {}
        if {"slope", "aspect_x"} & keys:
            t = slope_aspect_kernel(dem, res[0], res[1])
            out.update(slope=t[0], aspect_x=t[1])
        if "slope_pct_filled" in keys:
            out["slope_pct_filled"] = slope_percent_invest_kernel(filled_dem, res[0], res[1])
        if "relief" in keys:
            out["relief"] = relief_kernel(dem)
        return out

    def terrain_dask(self, dem, res: tuple[float, float], filled_dem=None) -> dict:
        """Terrain terms as dask arrays, each from one ``map_overlap`` (depth 1 = the 3×3 window; the kernels drop
        the halo themselves): slope and aspect term of the DEM (one Horn pass), its 3×3 relief (RWEQ roughness), and the percent slope of the
        pit-filled DEM of the routing (``filled_dem``, pygeoprocessing's rule) when a routed LS method needs it."""
        from functools import partial

        from ..kernels.terrain import relief_kernel, slope_aspect_kernel, slope_percent_invest_kernel

        keys = set(self.input_keys())
        out = {}
        if "relief" in keys:
            out["relief"] = dem.map_overlap(partial(relief_kernel, trim=1), depth=1, boundary=np.nan, trim=False,
                                            dtype=np.float32, meta=np.empty((0, 0), np.float32))
        if {"slope", "aspect_x"} & keys:
            t = dem.map_overlap(partial(slope_aspect_kernel, cellsize_x=res[0], cellsize_y=res[1], trim=1),
                                depth=1, boundary=np.nan, trim=False, new_axis=0, chunks=((2,),) + dem.chunks,
                                dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
            out.update(slope=t[0], aspect_x=t[1])
        if "slope_pct_filled" in keys:
            out["slope_pct_filled"] = filled_dem.map_overlap(
                partial(slope_percent_invest_kernel, cellsize_x=res[0], cellsize_y=res[1], trim=1), depth=1,
                boundary=np.nan, trim=False, dtype=np.float32, meta=np.empty((0, 0), np.float32))
        return out

    def compute_numpy(self, arrays: dict[str, np.ndarray], row_area_m2: np.ndarray) -> dict[str, np.ndarray]:
        """Whole-array path: ``arrays`` holds every key of :meth:`input_keys` as full numpy arrays."""
        return self.compute_block(arrays, row_area_m2)

    def compute_dask(self, arrays: dict, row_area_m2: np.ndarray):
        """Dask path: one ``map_blocks`` over all inputs (chunks must match) → stacked (n_outputs, h, w) float32."""
        import dask.array as da

        keys = self.input_keys()
        arrs = [arrays[k] for k in keys]
        n = len(self.output_keys)
        okeys = self.output_keys

        def _fn(*blocks, block_info=None):
            (r0, r1), _ = block_info[0]["array-location"]
            faults.hit("compute")  # fault point of the kill tests (gep_raster.faults); a no-op in runs
            res = self.compute_block(dict(zip(keys, blocks)), row_area_m2[r0:r1])
            return np.stack([res[k] for k in okeys])

        return da.map_blocks(_fn, *arrs, new_axis=0, chunks=((n,),) + arrs[0].chunks, dtype=np.float32,
                             meta=np.empty((0, 0, 0), np.float32))
