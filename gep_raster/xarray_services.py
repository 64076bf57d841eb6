"""Every regulating service on ``xarray.DataArray`` inputs: one function per service, numpy or dask backed.

The functions run the pipeline's own service objects (:class:`gep_raster.services.model.ServiceModel` built from a
run configuration, the legend and the prices), so a pixel gets exactly the number ``gep run`` writes for it: the
same kernels, the same nodata rule (land cover nodata, or a class without a legend row), the same pixel areas
(true areas per row on a geographic grid) and, for soil retention, the same flow routing and terrain terms::

    import gep_raster.xarray_services as xs
    inp = xs.open_run_inputs("pipelines/sample.yaml")            # lazy DataArrays on the run's grid
    ds = xs.water_conservation(inp["land_cover"], inp["precipitation"], inp["et"],
                               config="pipelines/sample.yaml")   # legend, prices, options of the run
    ds["water_conservation_m3"].sum().compute()                  # m3/a

Inputs (style of xarray-spatial): 2-D DataArrays ``(y, x)`` on one grid (same shape, CRS and transform, read with
rioxarray: ``da.rio.crs``, ``da.rio.transform()``), numpy- or dask-backed. A dask-backed call returns a lazy
Dataset whose blocks are the chunks of the land cover (``map_blocks`` over every input, ``map_overlap`` of depth 1
for the 3x3 slope window): numpy and dask give bit-identical results for any chunking. ``attrs["units"]``, when
present, is checked (e.g. precipitation must be ``mm/a`` or ``mm``); a raster's nodata value (``rio.nodata``) is
read as nodata. Outputs: an ``xarray.Dataset`` with one variable per output of the service (physical quantity,
value, intermediates, diagnostics), each float32 with NaN = nodata and ``attrs`` ``units``, ``long_name``,
``kind``, ``service``; CRS and transform of the inputs (``ds.rio.crs``); ``ds.attrs`` ``source`` (the method note of
each service, as in the run manifest), ``assumptions`` and ``prices`` (JSON of the prices and parameters used).

What comes from the arguments and what from ``config``: the rasters are always the arguments (the ``inputs`` paths
of a configuration are not read); ``config`` (a YAML path, a dict with the YAML's keys, also a partial one such as
``{"services": {...}, "parameters": {...}}``, or a RunConfig) gives the legend, prices, parameters, carbon method and
the ``services.<name>`` options; keyword ``**options`` of a service function override that service's options.
Polygon layers, economic accounts, land-cover scenarios and hydrological units are not used.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .errors import ConfigError, CRSError, GridMismatchError, InputError, RasterError, TableError

__all__ = ["water_conservation", "soil_retention", "carbon_sequestration", "oxygen_release", "air_purification",
           "water_purification", "climate_regulation", "flood_regulation", "pest_control", "gep_r", "open_run_inputs",
           "InputMismatchError", "UnitsError", "MissingInputError", "INPUT_ARGUMENTS"]


class InputMismatchError(GridMismatchError, ValueError):
    """An input DataArray is not on the grid of ``land_cover`` (shape, dims, CRS or transform); names the argument."""


class UnitsError(InputError, ValueError):
    """An input's ``attrs["units"]`` is not the unit the service needs; names the argument and the unit."""


class MissingInputError(InputError, ValueError):
    """A service needs an input DataArray that was not given; names the argument."""


# ------------------------------------------------------------------------------------------------------------------
# units accepted in attrs["units"] (compared after _norm_unit: lower case, no spaces, "yr"/"year" -> "a")
# ------------------------------------------------------------------------------------------------------------------
_UNITS = {
    "mm/a": {"mm/a", "mm", "mma-1", "mm/y"},
    "mm/month": {"mm/month", "mm/mon", "mm/mo", "mm", "mmmonth-1"},
    "m": {"m", "metre", "meter", "metres", "meters", "masl"},
    "MJ mm/(ha h a)": {"mjmm/(haha)", "mjmm/(hha)", "mjmmha-1h-1a-1", "mjmm/ha/h/a"},
    "t ha h/(ha MJ mm)": {"thah/(hamjmm)", "th/(mjmm)", "thahha-1mj-1mm-1", "thmj-1mm-1"},
    "1": {"1", "-", "", "fraction", "dimensionless", "unitless", "none"},
    "mm": {"mm", "mm/event", "mm/storm"},
    "days/a": {"days/a", "day/a", "d/a", "days", "d", "daysa-1", "da-1"},
    "m3/a per pixel": {"m3/aperpixel", "m3/a", "m3", "m3a-1"},
}
#: attrs["units"] of an NEP/NPP raster -> inputs.carbon.unit
_CARBON_UNITS = {
    "t_c_per_ha": {"t_c_per_ha", "tc/ha/a", "tc/ha", "tc/(haa)", "tcha-1a-1", "mgc/ha/a", "mgc/ha"},
    "g_c_per_m2": {"g_c_per_m2", "gc/m2/a", "gc/m2", "gc/(m2a)", "gcm-2a-1"},
    "t_dm_per_ha": {"t_dm_per_ha", "tdm/ha/a", "tdm/ha", "tdm/(haa)", "tdmha-1a-1"},
}

#: input argument -> (engine block key, config key given a placeholder, unit, kind): the DataArrays the functions
#: take (``precipitation_monthly`` is reduced to ``precip`` and to the R factor, see :func:`soil_retention`)
INPUT_ARGUMENTS = {
    "land_cover": ("lc", "inputs.land_cover", None, "categorical"),
    "precipitation": ("precip", "inputs.precipitation", "mm/a", "continuous"),
    "precipitation_monthly": (None, None, "mm/month", "continuous"),
    "et": ("et", "inputs.et", "mm/a", "continuous"),
    "et0": ("et", "inputs.et0", "mm/a", "continuous"),
    "dem": ("dem", "inputs.dem", "m", "continuous"),
    "r_factor": ("r", "inputs.r_factor", "MJ mm/(ha h a)", "continuous"),
    "k_factor": ("k", "inputs.k_factor", "t ha h/(ha MJ mm)", "continuous"),
    "c_factor": ("c", "inputs.c_factor", "1", "continuous"),
    "p_factor": ("p", "inputs.p_factor", "1", "continuous"),
    "carbon_flux": ("carbon_flux", "inputs.carbon.path", None, "continuous"),
    "alternate_land_cover": ("lc_alt", "inputs.carbon.alternate_land_cover", None, "categorical"),
    "depth_to_root_restricting_layer": ("wc_root_restricting_depth",
                                        "services.water_conservation.depth_to_root_restricting_layer", "mm",
                                        "continuous"),
    "pawc": ("wc_pawc", "services.water_conservation.pawc", "1", "continuous"),
    "sand": ("soil_sand", "services.soil_retention.soil_texture.sand", None, "continuous"),
    "silt": ("soil_silt", "services.soil_retention.soil_texture.silt", None, "continuous"),
    "clay": ("soil_clay", "services.soil_retention.soil_texture.clay", None, "continuous"),
    "organic_carbon": ("soil_oc", "services.soil_retention.soil_texture.organic_carbon", None, "continuous"),
    "ndvi": ("soil_ndvi", "services.soil_retention.vegetation_cover.ndvi", "1", "continuous"),
    "hot_days": ("climate_hot_days", "services.climate_regulation.hot_days_raster", "days/a", "continuous"),
    "storm_precip": ("flood_storm_precip", "services.flood_regulation.storm_precip_raster", "mm", "continuous"),
    "water_bodies_m3": ("flood_water_bodies_m3", None, "m3/a per pixel", "continuous"),
}
#: config keys named in the engine's messages -> the argument that supplies them
_CONFIG_TO_ARG = [("inputs.precipitation.monthly", "precipitation_monthly"), ("inputs.precipitation", "precipitation"),
                  ("inputs.et0", "et0"), ("inputs.et", "et"), ("inputs.dem", "dem"), ("inputs.r_factor", "r_factor"),
                  ("inputs.k_factor", "k_factor"), ("inputs.c_factor", "c_factor"), ("inputs.p_factor", "p_factor")]
_PLACEHOLDER = "<xarray:{}>"


def _norm_unit(u) -> str:
    s = str(u).strip().lower()
    for a, b in (("²", "2"), ("³", "3"), ("·", ""), ("*", ""), ("^", ""), (" ", ""), ("year", "a"), ("yr", "a")):
        s = s.replace(a, b)
    return s


def _check_units(name: str, arr, unit: str | None) -> None:
    """Raise UnitsError when ``arr.attrs['units']`` is present and is not ``unit`` (or an accepted spelling)."""
    if unit is None or "units" not in arr.attrs:
        return
    got = arr.attrs["units"]
    if _norm_unit(got) not in _UNITS[unit]:
        raise UnitsError(f"{name}: attrs['units'] is '{got}', but {name} must be in {unit} (accepted spellings: "
                         f"{sorted(_UNITS[unit])}); convert it, or set attrs['units'] if the values are in {unit}")


def _carbon_unit_of(arr) -> str | None:
    if "units" not in arr.attrs:
        return None
    n = _norm_unit(arr.attrs["units"])
    for code, names in _CARBON_UNITS.items():
        if n in names:
            return code
    raise UnitsError(f"carbon_flux: attrs['units'] is '{arr.attrs['units']}', not a carbon-flux unit the engine "
                     f"reads (t C/ha/a = t_c_per_ha, g C/m2/a = g_c_per_m2, t dry matter/ha/a = t_dm_per_ha)")


# ------------------------------------------------------------------------------------------------------------------
# the grid of the inputs
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class _Ref:
    """The reference grid (of ``land_cover``): RefGrid, dims, coordinates, dask chunks (None: numpy path)."""

    grid: object
    dims: tuple
    coords: dict
    chunks: tuple | None


def _squeeze_band(name: str, arr):
    import xarray as xr

    if not isinstance(arr, xr.DataArray):
        raise TypeError(f"{name}: expected an xarray.DataArray, got {type(arr).__name__}")
    want = 3 if name == "precipitation_monthly" else 2
    if arr.ndim == want + 1 and arr.shape[0] == 1:  # rioxarray.open_rasterio: (band, y, x)
        arr = arr.isel({arr.dims[0]: 0}, drop=True)
    if arr.ndim != want:
        raise InputMismatchError(f"{name}: expected a {want}-D DataArray "
                                 f"({'(month, y, x)' if want == 3 else '(y, x)'}), got dims {arr.dims}")
    if want == 3 and arr.shape[0] != 12:
        raise InputMismatchError(f"precipitation_monthly: expected 12 months on the first dim, got {arr.shape[0]}")
    return arr


def _grid_of(name: str, arr):
    """RefGrid of a DataArray (rioxarray CRS and transform). Raises CRSError / InputMismatchError naming it."""
    from .grid.reference import RefGrid

    crs = arr.rio.crs
    if crs is None:
        raise CRSError(f"{name}: the DataArray has no CRS; set it with {name}.rio.write_crs('EPSG:...')")
    try:
        return RefGrid(crs, arr.rio.transform(), int(arr.shape[-1]), int(arr.shape[-2]))
    except GridMismatchError as exc:
        raise InputMismatchError(f"{name}: {exc}") from None


def _reference(arrays: dict) -> _Ref:
    """Check every input against ``land_cover`` (dims, shape, CRS, transform within 1e-6 pixel)."""
    import dask.array as da

    lc = arrays["land_cover"]
    grid = _grid_of("land_cover", lc)
    for name, arr in arrays.items():
        if name == "land_cover":
            continue
        if tuple(arr.dims[-2:]) != tuple(lc.dims):
            raise InputMismatchError(f"{name}: dims {arr.dims} do not end with the land cover's {lc.dims}")
        g = _grid_of(name, arr)
        if g.shape != grid.shape:
            raise InputMismatchError(f"{name}: shape {g.shape} differs from the land cover's {grid.shape}")
        if not g.almost_equals(grid):
            raise InputMismatchError(
                f"{name}: not on the land cover's grid (CRS {g.crs.to_string()} vs {grid.crs.to_string()}, transform "
                f"{tuple(g.transform)[:6]} vs {tuple(grid.transform)[:6]}); reproject it first, e.g. "
                f"{name}.rio.reproject_match(land_cover)")
    chunks = None
    lazy = [a for a in arrays.values() if isinstance(a.data, da.Array)]
    if lazy:
        first = lc if isinstance(lc.data, da.Array) else lazy[0]
        chunks = tuple(first.data.chunks[-2:])
    return _Ref(grid, tuple(lc.dims), {d: lc.coords[d].variable for d in lc.dims if d in lc.coords}, chunks)


# ------------------------------------------------------------------------------------------------------------------
# the run configuration built from the arguments
# ------------------------------------------------------------------------------------------------------------------
def _set(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    d = raw
    for p in parents:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[last] = value


def _get(raw: dict, dotted: str, default=None):
    d = raw
    for p in dotted.split("."):
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _base_raw(config) -> tuple[dict, Path | None]:
    """The configuration as a dict with the YAML's keys, and the folder its relative paths are resolved from."""
    from .api import load_config

    if config is None:
        return {}, None
    if isinstance(config, Mapping):
        return deepcopy(dict(config)), None
    cfg = load_config(config)
    return cfg.to_json_dict(), cfg.base_dir


def _with_carbon(raw: dict, base_inputs: dict, arrays: dict, carbon: Mapping | None) -> None:
    """``inputs.carbon`` from the config's settings (no path) and ``carbon``; the path a placeholder."""
    c = {k: v for k, v in (base_inputs.get("carbon") or {}).items() if k not in ("path", "alternate_land_cover")}
    given = dict(carbon or {})
    c.update(given)
    flux = arrays.get("carbon_flux")
    if "method" not in given and "method" not in (base_inputs.get("carbon") or {}):
        c["method"] = "nep" if flux is not None else "rates"
    reads_flux = _enabled(raw, "carbon_sequestration") or (
        _enabled(raw, "oxygen_release") and _get(raw, "services.oxygen_release.method") == "garze_npp")
    if flux is None and not reads_flux and c["method"] in ("nep", "npp"):
        c = {"method": "rates"}  # no service reads the flux: the config's raster is not needed
    if flux is not None:
        if c["method"] not in ("nep", "npp"):
            raise InputError(f"carbon_flux is given but the carbon method is '{c['method']}' (only nep and npp read "
                             "a flux raster); pass carbon={'method': 'nep' or 'npp'}")
        c["path"] = _PLACEHOLDER.format("carbon_flux")
        attr_unit = _carbon_unit_of(flux)
        if c.get("unit") is None:
            c["unit"] = attr_unit
        elif attr_unit is not None and attr_unit != c["unit"]:
            raise UnitsError(f"carbon_flux: attrs['units'] '{flux.attrs['units']}' ({attr_unit}) differs from the "
                             f"carbon unit '{c['unit']}' of the configuration / carbon argument")
        if c.get("unit") is None:
            raise MissingInputError("carbon_flux: its unit is unknown; set carbon_flux.attrs['units'] (e.g. 't C/ha/a')"
                                    " or pass carbon={'unit': 't_c_per_ha' | 'g_c_per_m2' | 't_dm_per_ha'}")
    elif c["method"] in ("nep", "npp"):
        raise MissingInputError(f"carbon method '{c['method']}' needs the argument carbon_flux (the "
                                f"{c['method'].upper()} raster)")
    if "alternate_land_cover" in arrays:
        c["alternate_land_cover"] = {"path": _PLACEHOLDER.format("alternate_land_cover")}
    raw["inputs"]["carbon"] = c


def _enabled(raw: dict, name: str) -> bool:
    from .services.registry import DEFAULT_ON

    return bool((_get(raw, f"services.{name}") or {}).get("enabled", name in DEFAULT_ON))


def _with_inputs(raw: dict, arrays: dict, carbon: Mapping | None) -> None:
    """Replace ``inputs`` by placeholders of the arguments given (their config keys pass the services' checks)."""
    base_inputs = raw.get("inputs") or {}
    raw["inputs"] = {}
    for name in arrays:
        key = INPUT_ARGUMENTS[name][1]
        if key is None or key.startswith("inputs.carbon"):
            continue
        if key.startswith("services."):
            _set(raw, key, {"path": _PLACEHOLDER.format(name)})
        else:
            raw["inputs"][key.split(".", 1)[1]] = {"path": _PLACEHOLDER.format(name)}
    if "precipitation_monthly" in arrays and "precipitation" not in arrays:
        raw["inputs"]["precipitation"] = {"path": _PLACEHOLDER.format("precipitation (sum of precipitation_monthly)")}
    if "et" in arrays and "et0" in arrays:
        raise InputError("give either et (actual ET) or et0 (reference ET, times legend kc), not both")
    _with_carbon(raw, base_inputs, arrays, carbon)
    if "hot_days" in arrays:
        _get(raw, "services.climate_regulation", {}).pop("hot_days", None)
    if "storm_precip" in arrays:
        _get(raw, "services.flood_regulation", {}).pop("storm_precip_mm", None)
        _set(raw, "services.flood_regulation.vegetation_storm", True)
    for drop in ("layers", "economic_accounts", "scenario"):
        raw.pop(drop, None)
    raw["reference"] = "land_cover"
    raw.setdefault("name", "xarray_services")
    raw.setdefault("output", {"dir": "."})
    raw["legend"] = raw.get("legend") or {"path": _PLACEHOLDER.format("legend")}


def _with_services(raw: dict, targets: list[str] | None, services: Mapping | None) -> list[str]:
    """Enable the target services (and those they read: carbon for oxygen's co2_ratio, water conservation for
    flood regulation's water-balance bound when the config enables it); returns the services whose outputs are
    returned."""
    from .services.registry import DEFAULT_ON, REGISTRY

    svc = raw.setdefault("services", {})
    for name, opts in (services or {}).items():
        if name not in REGISTRY:
            raise ConfigError(f"services.{name}: unknown service; one of {list(REGISTRY)}")
        svc.setdefault(name, {}).update(dict(opts))
    if targets is None:
        return [n for n in REGISTRY if (svc.get(n) or {}).get("enabled", n in DEFAULT_ON)]
    need = list(targets)
    if "oxygen_release" in need and (svc.get("oxygen_release") or {}).get("method", "co2_ratio") == "co2_ratio":
        need.append("carbon_sequestration")
    fr = svc.get("flood_regulation") or {}
    if "flood_regulation" in need and fr.get("vegetation_storm") and (svc.get("water_conservation") or {}).get(
            "enabled", True):
        need.append("water_conservation")
    for name in REGISTRY:
        svc.setdefault(name, {})["enabled"] = name in need
    return list(targets)


def _with_prices(raw: dict, prices, base_dir) -> None:
    """``prices``: None, a PriceBook (used as is), a CSV path (``prices.table``), a mapping with the keys of the
    ``prices:`` section, or ``{price key: value}`` (yuan per the default unit, in the default price year)."""
    from .tables import PriceBook

    if prices is None or isinstance(prices, PriceBook):
        return
    if isinstance(prices, (str, Path)):
        _set(raw, "prices.table", str(Path(prices).expanduser().resolve()))
        return
    if not isinstance(prices, Mapping):
        raise ConfigError(f"prices must be a PriceBook, a CSV path or a mapping, not {type(prices).__name__}")
    if set(prices) <= {"table", "overrides", "price_index"}:
        raw["prices"] = {**(raw.get("prices") or {}), **dict(prices)}
        return
    book = PriceBook.from_config(_load(raw, base_dir))
    over = _get(raw, "prices.overrides", {}) or {}
    for key, value in prices.items():
        if key not in book.prices:
            raise ConfigError(f"prices: unknown price key '{key}'; known keys: {sorted(book.prices)}")
        p = book.prices[key]
        over[key] = {"value": float(value), "unit": p.unit, "price_year": p.price_year,
                     "source": "gep_raster.xarray_services argument prices"}
    _set(raw, "prices.overrides", over)


def _load(raw: dict, base_dir):
    """load_config of the built dict; the messages name the arguments that stand for ``inputs.*``."""
    from .api import load_config

    try:
        return load_config(raw, base_dir=base_dir)
    except ConfigError as exc:
        msg = str(exc)
        for key, arg in _CONFIG_TO_ARG:
            msg = re.sub(rf"(?<![\w.]){re.escape(key)}(?![\w.])", f"{key} (argument {arg})", msg)
        raise ConfigError(msg) from None


def _prepare_soil_r(raw: dict, arrays: dict) -> bool:
    """Soil retention's R: True when it must be computed from ``precipitation_monthly`` (then ``inputs.r_factor``
    is a placeholder and R is made by the same kernel and parameters as the pipeline's monthly stack)."""
    soil = _get(raw, "services.soil_retention", {}) or {}
    if not soil.get("enabled", True) or "r_factor" in arrays:
        return False
    method = soil.get("r_method", "wischmeier_monthly")
    if method == "wischmeier_monthly":
        if "precipitation_monthly" not in arrays:
            raise MissingInputError("soil retention (r_method 'wischmeier_monthly', the default) needs "
                                    "precipitation_monthly (12 months, mm/month) or r_factor; or set "
                                    "r_method='renard_freimund_1994' with precipitation (mm/a)")
        raw["inputs"]["r_factor"] = {"path": _PLACEHOLDER.format("r_factor (from precipitation_monthly)")}
        return True
    if method == "zhang_2002_daily":
        raise MissingInputError("soil retention r_method 'zhang_2002_daily' reads daily rainfall files; on DataArrays "
                                "pass r_factor (computed with gep_raster.kernels.rusle_factors."
                                "r_factor_daily_zhang2002) or use precipitation_monthly")
    return False


def _build(arrays: dict, targets, *, legend, prices, config, services, carbon):
    """RunConfig, Legend, PriceBook, the services returned and whether R comes from the monthly stack."""
    from .services.registry import required_legend_columns
    from .tables import Legend, PriceBook, load_legend

    raw, base_dir = _base_raw(config)
    if legend is not None and not isinstance(legend, Legend):
        raw["legend"] = ({"path": str(Path(legend).expanduser().resolve())} if isinstance(legend, (str, Path))
                         else dict(legend))
    elif legend is None and not raw.get("legend"):
        raise ConfigError("legend: give the land-cover legend (a Legend, a CSV path or a mapping with the keys of "
                          "the legend: section), or a config that has one")
    returned = _with_services(raw, targets, services)
    _with_inputs(raw, arrays, carbon)
    monthly_r = _prepare_soil_r(raw, arrays)
    _with_prices(raw, prices, base_dir)
    wb_only = _water_bodies_only(raw, arrays)
    cfg = _load(raw, base_dir)
    if wb_only:  # the water-body term alone (its polygons are replaced by the water_bodies_m3 raster)
        cfg.services.flood_regulation.enabled = True
    if "flood_regulation" in cfg.services.enabled() and cfg.services.flood_regulation.water_bodies is not None:
        raise ConfigError("services.flood_regulation.water_bodies: the pipeline spreads the water-body polygons onto "
                          "its grid (gep_raster.run); on DataArrays pass water_bodies_m3 (the spread volumes, m3/a "
                          "per pixel) and leave water_bodies out")
    leg = legend if isinstance(legend, Legend) else load_legend(cfg, required_legend_columns(cfg))
    if isinstance(legend, Legend):
        _check_legend_columns(leg, required_legend_columns(cfg))
    book = prices if isinstance(prices, PriceBook) else PriceBook.from_config(cfg)
    return cfg, leg, book, returned, monthly_r


def _water_bodies_only(raw: dict, arrays: dict) -> bool:
    """With ``water_bodies_m3`` and no vegetation term, flood regulation is validated disabled (its check wants
    polygons or the vegetation term) and enabled afterwards."""
    fr = _get(raw, "services.flood_regulation", {}) or {}
    if "water_bodies_m3" not in arrays or not fr.get("enabled") or fr.get("vegetation_storm"):
        return False
    fr["enabled"] = False
    return True


def _attach_water_bodies(svc) -> None:
    """Flood regulation reads the ``water_bodies_m3`` argument as its water-body block (the raster the pipeline
    spreads the polygons to in ``Service.configure`` and reads back as the block ``flood_water_bodies_m3``)."""
    svc.flags["water"] = True
    part = ("water bodies from the argument water_bodies_m3 (lake, reservoir and marsh volumes already spread to the "
            "pixels, m3/a per pixel; Garze GEP 2010 2.4.4)")
    head = "Flood regulation (m3/a) = "
    rest = svc.note[len(head):] if svc.note.startswith(head) else svc.note
    svc.note = head + part + ("" if rest.startswith(";") else " + ") + rest


def _check_legend_columns(legend, required: dict) -> None:
    missing = sorted(c for c in required if c not in legend.table.columns)
    if missing:
        raise TableError(f"legend {legend.label}: column(s) {missing} needed by the services are missing")


# ------------------------------------------------------------------------------------------------------------------
# the engine's input blocks
# ------------------------------------------------------------------------------------------------------------------
def _lc_block(block, nodata, known):
    """Class codes as the pipeline reads them: int32, -1 = nodata; a code without a legend row is a TableError."""
    a = np.asarray(block)
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if (finite & (a != np.round(a))).any():
            raise RasterError("land_cover: holds non-integer class codes; it must hold integer class codes")
        valid = finite & (a >= 0)
    elif a.dtype.kind in "iub":
        valid = a >= 0
    else:
        raise RasterError(f"land_cover: dtype {a.dtype} is not a class-code type")
    if nodata is not None:
        valid &= a != nodata
    if (valid & (a > 65535)).any():
        raise RasterError("land_cover: holds class codes outside 0..65535")
    out = np.where(valid, a, -1).astype(np.int32)
    codes = np.unique(out[out >= 0])
    unknown = codes[~known[codes]]
    if unknown.size:
        raise TableError(f"land_cover: class code(s) {unknown.tolist()[:20]} have no legend row; add them to the "
                         "legend (or set them to the nodata value)")
    return out


def _cont_block(block, nodata):
    """Continuous values as the pipeline reads them: float32, NaN = nodata."""
    a = np.asarray(block)
    out = a.astype(np.float32, copy=False)
    if nodata is not None:
        hit = a == nodata
        if hit.any():
            out = np.where(hit, np.float32(np.nan), out)
    return out


def _annual_block(stack):
    """Annual sum of 12 monthly blocks: float64 accumulation in month order, as
    :class:`~gep_raster.grid.io_read.SumSource`."""
    acc = np.zeros(stack.shape[1:], dtype=np.float64)
    for m in range(stack.shape[0]):
        acc += stack[m]
    return acc.astype(np.float32)


def _r_block(stack, reduce):
    try:
        return np.asarray(reduce(np.ascontiguousarray(stack, dtype=np.float32)), dtype=np.float32)
    except ValueError as exc:
        raise InputError(f"precipitation_monthly: R by the monthly Wischmeier formula: {exc}") from None


def _nodata_of(arr):
    v = arr.rio.nodata
    if v is None:
        return None
    v = np.asarray(v).item()
    return None if isinstance(v, float) and np.isnan(v) else v


def _prepared(name: str, arr, ref: _Ref, known):
    """An argument as an engine block array (numpy, or dask rechunked to the reference chunks)."""
    import dask.array as da

    kind = INPUT_ARGUMENTS[name][3]
    fn = (partial(_lc_block, nodata=_nodata_of(arr), known=known) if kind == "categorical"
          else partial(_cont_block, nodata=_nodata_of(arr)))
    dtype = np.int32 if kind == "categorical" else np.float32
    data = arr.data
    if ref.chunks is None:
        return fn(np.asarray(data))
    chunks = ((data.shape[0],),) + ref.chunks if data.ndim == 3 else ref.chunks
    data = data.rechunk(chunks) if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=chunks)
    return data.map_blocks(fn, dtype=dtype, meta=np.empty((0,) * data.ndim, dtype))


def _reduce_months(stack, fn, ref: _Ref):
    if ref.chunks is None:
        return fn(stack)
    return stack.map_blocks(fn, drop_axis=0, dtype=np.float32, meta=np.empty((0, 0), np.float32))


def _wischmeier(book):
    """The R reduce of the pipeline's monthly stack (soil_retention.Service._configure_r), with the run's parameters."""
    from .kernels import rusle_factors as rf
    from .services.soil_retention import METHOD_PARAMETERS

    sc = {k: book.param(f"soil_retention.{k}") for k in METHOD_PARAMETERS["wischmeier_monthly"]}
    return partial(rf.r_factor_monthly_wischmeier, a=sc["r_monthly_a"], b=sc["r_monthly_b"], c=sc["r_monthly_c"],
                   us_to_si=sc["r_us_to_si"])


def _known_codes(legend) -> np.ndarray:
    known = np.zeros(65537, dtype=bool)
    known[np.asarray(legend.codes, dtype=np.int64)] = True
    known[list(legend.nodata_codes)] = True
    return known


def _engine_arrays(model, arrays: dict, ref: _Ref, legend, book, monthly_r: bool) -> dict:
    """Every input block key of the model (:meth:`ServiceModel.input_keys`) as a numpy or dask array."""
    known = _known_codes(legend)
    prep = {name: _prepared(name, arr, ref, known) for name, arr in arrays.items()}
    out = {"lc": prep["land_cover"]}
    for name, p in prep.items():
        key = INPUT_ARGUMENTS[name][0]
        if key is not None and key != "lc":
            out[key] = p
    if "precipitation_monthly" in prep:
        if "precip" not in out:
            out["precip"] = _reduce_months(prep["precipitation_monthly"], _annual_block, ref)
        if monthly_r:
            out["r"] = _reduce_months(prep["precipitation_monthly"], partial(_r_block, reduce=_wischmeier(book)), ref)
    keys = model.input_keys()
    if model.needs_terrain() or model.needs_routing():
        if "dem" not in out:
            raise MissingInputError(f"{', '.join(_needing(model, 'dem'))}: needs the argument dem (elevation, m)")
        out.update(_terrain(model, out["dem"], ref))
    missing = [k for k in keys if k not in out]
    if missing:
        args = {k: [a for a, v in INPUT_ARGUMENTS.items() if v[0] == k] or [k] for k in missing}
        raise MissingInputError("; ".join(f"{', '.join(_needing(model, k))} needs the argument "
                                          f"{' or '.join(args[k])}" for k in missing))
    return {k: out[k] for k in keys}


def _needing(model, key: str) -> list[str]:
    return [s.name for s in model.services if key in s.input_keys()] or [s.name for s in model.services]


def _terrain(model, dem, ref: _Ref) -> dict:
    """Routing products (eager: flow routing is global, :func:`gep_raster.terrain.routing.route` on the whole DEM)
    and the terrain terms (3x3 windows: numpy, or ``map_overlap`` of depth 1 on dask)."""
    import dask.array as da

    grid = ref.grid
    if abs(grid.res[0] - grid.res[1]) > 1e-6 * grid.res[0]:
        raise InputMismatchError(f"dem: terrain terms (slope, LS) need square pixels; the grid has {grid.res}")
    routed = {}
    req = model.routing_request()
    if req is not None:
        from .terrain.routing import route

        method, opts = req
        dem_np = np.asarray(dem.compute() if isinstance(dem, da.Array) else dem, dtype=np.float32)
        prod = route(dem_np, grid.transform, method=method, latlon=grid.is_geographic, **opts)
        del dem_np
        routed = {k: (v if ref.chunks is None else da.from_array(v, chunks=ref.chunks, name=False))
                  for k, v in prod.items()}
    if ref.chunks is None:
        out = model.terrain_numpy(dem, grid.res, filled_dem=routed.get("filled_dem"))
    else:
        out = model.terrain_dask(dem, grid.res, filled_dem=routed.get("filled_dem"))
    out.update(routed)
    return out


def _class_area(cfg, arrays: dict, ref: _Ref, known) -> dict:
    """Class areas (m2) over the grid when a service needs them (water purification's emissions cap), summed over
    the windows of the pipeline's legend-check scan (:func:`gep_raster.grid.run_inputs.class_histogram`)."""
    from .grid.run_inputs import SCAN_CHUNK, class_histogram

    wp = cfg.services.water_purification
    if "water_purification" not in cfg.services.enabled() or wp.emissions_cap is None:
        return {}
    lc = _prepared("land_cover", arrays["land_cover"], ref, known)
    lc = np.asarray(lc.compute() if hasattr(lc, "compute") else lc)
    src = _ArraySource(ref.grid, lc)
    return class_histogram(src, cfg.output.chunk_size or SCAN_CHUNK, with_area=True)[1]


@dataclass
class _ArraySource:
    """A computed land-cover block as a source of :func:`~gep_raster.grid.run_inputs.class_histogram`."""

    grid: object
    array: np.ndarray
    name: str = "land_cover"

    def read(self, r0, r1, c0, c1):
        return self.array[r0:r1, c0:c1]


# ------------------------------------------------------------------------------------------------------------------
# computation and the Dataset
# ------------------------------------------------------------------------------------------------------------------
def _evaluate(targets, inputs: dict, *, legend, prices, config, services=None, carbon=None):
    """Run the services on the inputs; the Dataset of the outputs of ``targets`` (None: every enabled service)."""
    from .services import ServiceModel

    arrays = {k: _squeeze_band(k, v) for k, v in inputs.items() if v is not None}
    unknown = sorted(set(arrays) - set(INPUT_ARGUMENTS))
    if unknown:
        raise TypeError(f"unknown input argument(s) {unknown}; the inputs are {sorted(INPUT_ARGUMENTS)}")
    if "land_cover" not in arrays:
        raise MissingInputError("land_cover: the land-cover class raster is required")
    ref = _reference(arrays)
    for name, arr in arrays.items():
        _check_units(name, arr, INPUT_ARGUMENTS[name][2])
    cfg, leg, book, returned, monthly_r = _build(arrays, targets, legend=legend, prices=prices, config=config,
                                                 services=services, carbon=carbon)
    model = ServiceModel.from_config(cfg, leg, book, cell_size=ref.grid.res[0], geographic=ref.grid.is_geographic,
                                     class_area_m2=_class_area(cfg, arrays, ref, _known_codes(leg)))
    if "water_bodies_m3" in arrays and "flood_regulation" in model.names:
        _attach_water_bodies(model.service("flood_regulation"))
    blocks = _engine_arrays(model, arrays, ref, leg, book, monthly_r)
    row_area = ref.grid.row_pixel_area_m2
    if ref.chunks is None:
        res = model.compute_numpy(blocks, row_area)
    else:
        stacked = model.compute_dask(blocks, row_area)
        res = {k: stacked[i] for i, k in enumerate(model.output_keys)}
    keep = [o for o in model.outputs if targets is None or o.service in returned]
    return _dataset(res, keep, model, book, ref, monthly_r)


def _dataset(res: dict, specs: list, model, book, ref: _Ref, monthly_r: bool):
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    data_vars = {}
    for o in specs:
        attrs = {"units": o.unit, "long_name": o.description, "kind": o.kind, "service": o.service}
        if o.key == "r_factor" and monthly_r:
            attrs["method"] = "R by the monthly Wischmeier formula from precipitation_monthly (as the pipeline)"
        data_vars[o.key] = xr.DataArray(res[o.key], dims=ref.dims, coords=ref.coords, attrs=attrs)
    ds = xr.Dataset(data_vars)
    names = sorted({o.service for o in specs} - {"gep_r"}, key=model.names.index)
    ds.attrs.update({
        "services": ", ".join(names),
        "source": " | ".join(f"{n}: {model.service(n).note}" for n in names),
        "assumptions": " | ".join(model.assumptions),
        "prices": json.dumps(book.used_records(), default=str, ensure_ascii=False),
        "engine": "gep_raster.xarray_services (the pipeline's ServiceModel and kernels)",
    })
    ds = ds.rio.write_crs(ref.grid.crs).rio.write_transform(ref.grid.transform)
    for k in ds.data_vars:
        ds[k].rio.write_nodata(np.nan, encoded=False, inplace=True)
    return ds


# ------------------------------------------------------------------------------------------------------------------
# public functions, one per service
# ------------------------------------------------------------------------------------------------------------------
_COMMON = """
    legend : Legend, str, Path or dict, optional
        The land-cover legend: a :class:`gep_raster.tables.Legend`, a legend CSV path, or a mapping with the keys of
        the ``legend:`` section (``path``, ``product``, ``join`` ...). Default: the legend of ``config``.
    prices : PriceBook, str, Path or dict, optional
        Unit prices: a :class:`gep_raster.tables.PriceBook`, a price CSV (``prices.table``), a mapping with the keys
        of the ``prices:`` section, or ``{price key: value}`` (yuan per the default unit). Default: those of
        ``config``, else ``gep_raster/data/prices.csv``.
    config : str, Path, dict or RunConfig, optional
        A run configuration (YAML path, dict, possibly partial, or RunConfig): legend, prices, parameters, carbon
        method and service options. Its input paths are not read."""


def water_conservation(land_cover, precipitation=None, et=None, *, et0=None, precipitation_monthly=None,
                       depth_to_root_restricting_layer=None, pawc=None, legend=None, prices=None, config=None,
                       **options):
    """Water conservation (水源涵养) per pixel on DataArrays.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
        Land cover; negative, NaN or ``rio.nodata`` = nodata. Its grid (CRS, transform) is the grid of the outputs.
    precipitation : xarray.DataArray, (y, x), float, mm/a
        Annual precipitation P (``units`` 'mm/a' or 'mm'). Optional when ``precipitation_monthly`` is given.
    et : xarray.DataArray, (y, x), float, mm/a
        Actual evapotranspiration ET.
    et0 : xarray.DataArray, (y, x), float, mm/a, optional
        Reference ET0 instead of ``et`` (ET = legend ``kc`` × ET0); required by ``method='invest_awy'``.
    precipitation_monthly : xarray.DataArray, (12, y, x), float, mm/month, optional
        Monthly precipitation; P = their sum (float64, as the pipeline's 12 monthly rasters).
    depth_to_root_restricting_layer, pawc : xarray.DataArray, (y, x), optional
        ``method='invest_awy'`` soil rasters (mm; fraction 0-1), instead of the constants ``soil_depth_mm`` and
        ``pawc_fraction``.
    {common}
    **options
        ``services.water_conservation`` keys: ``method`` ('water_balance' or 'invest_awy'), ``negative_values``
        ('clip' or 'keep'), ``seasonality_z``, ``soil_depth_mm``, ``pawc_fraction``.

    Returns
    -------
    xarray.Dataset
        float32 (y, x), NaN = nodata, on the land cover's grid (numpy or dask as the inputs):
        ``water_conservation_m3`` (m3/a per pixel), ``water_conservation_yuan`` (yuan/a per pixel),
        ``water_deficit_m3`` (diagnostic, m3/a per pixel), ``precipitation_mm`` and ``et_mm`` (mm/a).

    Raises
    ------
    InputMismatchError (ValueError, GridMismatchError)
        An input is not on the land cover's grid (shape, dims, CRS, transform); the message names it.
    UnitsError (ValueError, InputError)
        ``attrs['units']`` of an input is not its unit (e.g. precipitation in 'm').
    MissingInputError, ConfigError, TableError
        A needed input, key or legend column is missing (names the argument, key or column).

    Source
    ------
    Water balance Q = (P − α·P − ET)·A·10⁻³ m3/a, α = legend ``runoff_coef`` (Garzê GEP, 白玛卓嘎 et al. 2017,
    生态学报 37(19) eq. 3; HJ 1173-2021 A.1 family); or the InVEST Annual Water Yield (Budyko, Fu 1981 / Zhang et al.
    2004). Value = Q × reservoir construction cost. :mod:`gep_raster.services.water_conservation`.
    """
    return _evaluate(["water_conservation"], dict(
        land_cover=land_cover, precipitation=precipitation, et=et, et0=et0, precipitation_monthly=precipitation_monthly,
        depth_to_root_restricting_layer=depth_to_root_restricting_layer, pawc=pawc),
        legend=legend, prices=prices, config=config, services={"water_conservation": options})


def soil_retention(land_cover, dem, precipitation_monthly=None, *, r_factor=None, precipitation=None, k_factor=None,
                   c_factor=None, p_factor=None, ndvi=None, sand=None, silt=None, clay=None, organic_carbon=None,
                   legend=None, prices=None, config=None, **options):
    """Soil retention (土壤保持) by RUSLE per pixel on DataArrays.

    Flow routing (the LS factor's upslope area) is global, not blockwise: it is computed **eagerly** with the
    engine's routing (:func:`gep_raster.terrain.routing.route`, the pipeline's whole-DEM mode) on the whole DEM,
    also for dask inputs (the DEM is computed once, the products re-chunked as the land cover; memory about
    :data:`gep_raster.budget.ROUTING_BYTES_PER_PIXEL` per pixel). Routing per hydrological unit is pipeline-only.
    Slope terms use ``map_overlap`` of depth 1 (dask) or one numpy pass.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
        Land cover (projected grid with square pixels in metres).
    dem : xarray.DataArray, (y, x), float, m
        Elevation (``units`` 'm').
    precipitation_monthly : xarray.DataArray, (12, y, x), float, mm/month, optional
        Monthly precipitation for R by the monthly Wischmeier formula (``r_method`` 'wischmeier_monthly', the
        default; the same kernel and parameters as the pipeline's 12-raster stack).
    r_factor : xarray.DataArray, (y, x), MJ mm/(ha h a), optional
        R raster instead (then ``precipitation_monthly`` is not needed).
    precipitation : xarray.DataArray, (y, x), mm/a, optional
        Annual precipitation for ``r_method='renard_freimund_1994'``.
    k_factor, c_factor, p_factor : xarray.DataArray, (y, x), optional
        RUSLE K (t ha h/(ha MJ mm)), C and P (-) rasters; default K = parameter ``soil_retention.k_constant``
        (an assumption), C and P from the legend (``usle_c``, ``usle_p``).
    ndvi, sand, silt, clay, organic_carbon : xarray.DataArray, (y, x), optional
        ``c_method='cai_2000'`` (with ``vegetation_cover={{'ndvi_soil':..., 'ndvi_veg':...}}``) and ``k_method='epic'``
        (with ``soil_texture={{'texture_unit':..., 'oc_unit':...}}``) rasters.
    {common}
    **options
        ``services.soil_retention`` keys (``ls_method``, ``routing``, ``threshold_flow_accumulation``, ``l_max``,
        ``r_method``, ``k_method``, ``c_method``, ``exclude_ecosystems`` ...).

    Returns
    -------
    xarray.Dataset
        float32 (y, x), NaN = nodata: ``soil_retention_t`` (t/a per pixel), ``soil_retention_yuan`` (yuan/a per
        pixel), ``ls_factor`` (-), ``r_factor`` (MJ mm/(ha h a)), ``potential_erosion`` and ``actual_erosion``
        (t/(ha a)), and ``k_factor`` / ``c_factor`` when computed from soil texture / NDVI.

    Raises
    ------
    InputMismatchError, UnitsError, MissingInputError, ConfigError, TableError
        As :func:`water_conservation`; also non-square pixels (InputMismatchError) and a geographic grid (CRSError).

    Source
    ------
    RUSLE Q = R·K·LS·(1 − C·P) × A (Garzê GEP §2.4.2; Renard et al. 1997), LS of InVEST SDR 3.9-3.13 on D8 routing
    by default; value per t = λ/ρ × dredging cost + N and P contents × fertiliser prices.
    :mod:`gep_raster.services.soil_retention`.
    """
    return _evaluate(["soil_retention"], dict(
        land_cover=land_cover, dem=dem, precipitation_monthly=precipitation_monthly, r_factor=r_factor,
        precipitation=precipitation, k_factor=k_factor, c_factor=c_factor, p_factor=p_factor, ndvi=ndvi, sand=sand,
        silt=silt, clay=clay, organic_carbon=organic_carbon),
        legend=legend, prices=prices, config=config, services={"soil_retention": options})


def carbon_sequestration(land_cover, carbon_flux=None, *, alternate_land_cover=None, carbon=None, legend=None,
                         prices=None, config=None, **options):
    """Carbon sequestration (固碳) per pixel on DataArrays.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    carbon_flux : xarray.DataArray, (y, x), float, optional
        NEP or NPP raster (methods ``nep``, ``npp``); its unit from ``attrs['units']`` ('t C/ha/a', 'g C/m2/a',
        't dm/ha/a' or the codes t_c_per_ha, g_c_per_m2, t_dm_per_ha) or ``carbon={{'unit': ...}}``. Without it and
        without a config method: ``rates`` (legend ``carbon_tco2_ha``).
    alternate_land_cover : xarray.DataArray, (y, x), optional
        The other land cover of method ``stock_change`` (with ``carbon={{'method': 'stock_change', 'pools_table':
        ..., 'years': ...}}``).
    carbon : dict, optional
        ``inputs.carbon`` keys (``method``, ``unit``, ``pools_table``, ``pool_columns``, ``years``), overriding the
        config's.
    {common}
    **options
        ``services.carbon_sequestration`` keys (``negative_values``: 'keep' or 'clip').

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``carbon_sequestration_tco2`` (t CO2/a per pixel), ``carbon_sequestration_yuan`` (yuan/a per
        pixel), ``carbon_negative_tco2`` (diagnostic, t CO2/a per pixel).

    Raises
    ------
    InputMismatchError, UnitsError, MissingInputError, ConfigError, TableError
        As :func:`water_conservation`.

    Source
    ------
    NEP × 44/12 (net flux), NPP × 1.63 t CO2/t dry matter (LY/T stoichiometry, gross), legend rates, or InVEST
    Carbon pool change / years × 44/12; value = Q × CO2 price. :mod:`gep_raster.services.carbon_sequestration`.
    """
    return _evaluate(["carbon_sequestration"], dict(land_cover=land_cover, carbon_flux=carbon_flux,
                                                    alternate_land_cover=alternate_land_cover),
                     legend=legend, prices=prices, config=config, services={"carbon_sequestration": options},
                     carbon=carbon)


def oxygen_release(land_cover, carbon_flux=None, *, carbon=None, legend=None, prices=None, config=None, **options):
    """Oxygen release (释氧) per pixel on DataArrays.

    With ``method='co2_ratio'`` (default) carbon sequestration is computed alongside (its outputs are not returned),
    as in a run: Q_O2 = 32/44 × Q_CO2 of the same pixel.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    carbon_flux : xarray.DataArray, (y, x), float, optional
        As :func:`carbon_sequestration` (NPP for ``method='garze_npp'``).
    carbon : dict, optional
        ``inputs.carbon`` keys, as :func:`carbon_sequestration`.
    {common}
    **options
        ``services.oxygen_release`` keys (``method``: 'co2_ratio' or 'garze_npp').

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``oxygen_release_t`` (t O2/a per pixel), ``oxygen_release_yuan`` (yuan/a per pixel).

    Raises
    ------
    InputMismatchError, UnitsError, MissingInputError, ConfigError, TableError
        As :func:`water_conservation`.

    Source
    ------
    32/44 × the carbon-sequestration CO2 flux (one flux for both), or 1.19 t O2/t NPP dry matter (Garzê GEP 2010
    rule); value = Q × industrial oxygen price. :mod:`gep_raster.services.oxygen_release`.
    """
    return _evaluate(["oxygen_release"], dict(land_cover=land_cover, carbon_flux=carbon_flux),
                     legend=legend, prices=prices, config=config, services={"oxygen_release": options}, carbon=carbon)


def air_purification(land_cover, *, legend=None, prices=None, config=None, **options):
    """Air purification (空气净化) per pixel on DataArrays, capacity method.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    {common}
    **options
        ``services.air_purification`` keys (``pollutants``: subset of ['so2', 'nox', 'dust']).

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``air_purification_<pollutant>_t`` (t/a per pixel) and ``air_purification_yuan`` (yuan/a per
        pixel).

    Raises
    ------
    InputMismatchError, ConfigError, TableError
        As :func:`water_conservation` (a legend column ``<pollutant>_kg_ha`` missing: TableError).

    Source
    ------
    Q_j = q_ij × A (legend ``<pollutant>_kg_ha``, kg/ha/a; no emissions cap); value = Σ_j Q_j × treatment cost_j
    (Garzê GEP 2010 prices). :mod:`gep_raster.services.air_purification`.
    """
    return _evaluate(["air_purification"], dict(land_cover=land_cover), legend=legend, prices=prices,
                     config=config, services={"air_purification": options})


def pest_control(land_cover, *, legend=None, prices=None, config=None, **options):
    """Pest control (病虫害控制) per pixel on DataArrays: natural forest and grassland area × control cost.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    {common}
    **options
        ``services.pest_control`` keys (``forest_ecosystems``, ``grassland_ecosystems``, ``natural_share_column``).

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``pest_control_forest_ha``, ``pest_control_grassland_ha`` (ha of natural forest / grassland
        per pixel) and ``pest_control_yuan`` (yuan/a per pixel).

    Raises
    ------
    InputMismatchError, ConfigError, TableError
        As :func:`water_conservation` (a legend ``natural_share`` outside [0, 1]: TableError).

    Source
    ------
    Garzê GEP 2010 (Baima Zhuoga et al. 2017) §2.4.9 and table 3: A_natural forest × 375 yuan/hm² + A_natural
    grassland × 112.5 yuan/hm². :mod:`gep_raster.services.pest_control`.
    """
    return _evaluate(["pest_control"], dict(land_cover=land_cover), legend=legend, prices=prices,
                     config=config, services={"pest_control": options})


def water_purification(land_cover, *, legend=None, prices=None, config=None, **options):
    """Water purification (水质净化) per pixel on DataArrays, capacity method with an optional emissions cap.

    With ``emissions_cap`` the regional capacity is summed over the land cover's class areas (computed eagerly,
    as the pipeline's legend check does).

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    {common}
    **options
        ``services.water_purification`` keys (``pollutants``: subset of ['cod', 'nh3n', 'tp'];
        ``emissions_cap``: ``{{'cod_t': ..., 'nh3n_t': ..., 'tp_t': ...}}``, t/a).

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``water_purification_<pollutant>_t`` (t/a per pixel), ``water_purification_yuan`` (yuan/a
        per pixel).

    Raises
    ------
    InputMismatchError, ConfigError, TableError
        As :func:`water_conservation`.

    Source
    ------
    Q_j = s_j × q_ij × A (legend ``<pollutant>_kg_ha`` [U]); s_j = emissions / capacity where the capacity exceeds
    the emissions (methods note §5.3); value = Σ_j Q_j × treatment cost_j.
    :mod:`gep_raster.services.water_purification`.
    """
    return _evaluate(["water_purification"], dict(land_cover=land_cover), legend=legend, prices=prices,
                     config=config, services={"water_purification": options})


def climate_regulation(land_cover, et=None, *, et0=None, hot_days=None, legend=None, prices=None, config=None,
                       **options):
    """Climate regulation (气候调节) per pixel on DataArrays.

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    et : xarray.DataArray, (y, x), float, mm/a
        Actual ET (or ``et0``: ET = legend ``kc`` × ET0).
    hot_days : float or xarray.DataArray (y, x), days/a, optional
        D, days with daily mean > 26 °C: a number (``hot_days``) or a raster (``hot_days_raster``). Default: the
        config's.
    {common}
    **options
        ``services.climate_regulation`` keys (``hot_season_et_factor``, ``vegetation_ecosystems``,
        ``water_ecosystems``, ``humidifier``).

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``climate_regulation_kwh`` (kWh/a per pixel), ``climate_regulation_yuan`` (yuan/a per
        pixel).

    Raises
    ------
    InputMismatchError, UnitsError, MissingInputError, ConfigError, TableError
        As :func:`water_conservation`; RasterError when the hot-days raster leaves 0..366 days/a (at compute).

    Source
    ------
    Garzê GEP 2010 (白玛卓嘎 et al. 2017): E_pt = EPP·S·D/(3600·r) on vegetation, E_we = E_w·ρ·q/3600 + E_w·γ on water,
    EPP and E_w from ET [EX]; value = kWh × electricity price. :mod:`gep_raster.services.climate_regulation`.
    """
    import xarray as xr

    raster = hot_days if isinstance(hot_days, xr.DataArray) else None
    if hot_days is not None and raster is None:
        options = {**options, "hot_days": float(hot_days), "hot_days_raster": None}
    return _evaluate(["climate_regulation"], dict(land_cover=land_cover, et=et, et0=et0, hot_days=raster),
                     legend=legend, prices=prices, config=config, services={"climate_regulation": options})


def flood_regulation(land_cover, precipitation=None, et=None, *, et0=None, precipitation_monthly=None,
                     storm_precip=None, water_bodies_m3=None, legend=None, prices=None, config=None, **options):
    """Flood regulation (洪水调蓄) per pixel on DataArrays: vegetation storm retention and/or water bodies.

    The vegetation term (opt-in, [U]) is bounded by P − ET − water conservation; water conservation is computed
    alongside when the config enables it (the default), as in a run (its outputs are not returned).

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    precipitation, et : xarray.DataArray, (y, x), float, mm/a
        Annual P and ET of the water-balance bound (or ``et0``; P also from ``precipitation_monthly``).
    storm_precip : float (mm) or xarray.DataArray (y, x), mm, optional
        Storm rainfall depth per storm event / season: turns the vegetation term on (``storm_precip_mm`` or
        ``storm_precip_raster``). Default: the config's.
    water_bodies_m3 : xarray.DataArray, (y, x), m3/a per pixel, optional
        Lakes, reservoirs and marshes volume already spread to the pixels (the pipeline spreads the
        ``water_bodies`` polygons to ``.gep_state/flood_regulation/water_bodies_m3.tif``); polygons themselves are
        refused here.
    {common}
    **options
        ``services.flood_regulation`` keys (``vegetation_storm``, ``vegetation_ecosystems``).

    Returns
    -------
    xarray.Dataset
        float32 (y, x): ``flood_regulation_m3`` (m3/a per pixel), ``flood_regulation_yuan`` (yuan/a per pixel),
        diagnostics ``flood_regulation_vegetation_m3``, ``flood_regulation_water_bodies_m3`` (m3/a per pixel) and,
        with the vegetation term, ``flood_regulation_capped_m3`` (m3/a per pixel), ``flood_regulation_capped_px``.

    Raises
    ------
    InputMismatchError, UnitsError, MissingInputError, ConfigError, TableError
        As :func:`water_conservation`; ConfigError for ``water_bodies`` polygons in the config.

    Source
    ------
    C_v = (P_storm − c_s·P_storm)·A on vegetation [U: MEE 2020 guideline as reported], bounded by the water balance
    (methods note §6.4); water bodies by Garzê GEP 2010 §2.4.4; value = volume × reservoir construction cost.
    :mod:`gep_raster.services.flood_regulation`.
    """
    import xarray as xr

    raster = storm_precip if isinstance(storm_precip, xr.DataArray) else None
    if raster is not None:
        options = {**options, "vegetation_storm": True, "storm_precip_mm": None}
    elif storm_precip is not None:
        options = {**options, "vegetation_storm": True, "storm_precip_mm": float(storm_precip),
                   "storm_precip_raster": None}
    return _evaluate(["flood_regulation"], dict(
        land_cover=land_cover, precipitation=precipitation, et=et, et0=et0, precipitation_monthly=precipitation_monthly,
        storm_precip=raster, water_bodies_m3=water_bodies_m3),
        legend=legend, prices=prices, config=config, services={"flood_regulation": options})


def gep_r(land_cover, *, legend=None, prices=None, config=None, services=None, carbon=None, **inputs):
    """Every enabled regulating service of a configuration, and GEP-R, on DataArrays (what ``gep run`` maps).

    Parameters
    ----------
    land_cover : xarray.DataArray, (y, x), integer class codes
    {common}
    services : dict, optional
        ``{{service: {{option: value}}}}`` merged into ``services:``
        (e.g. ``{{'oxygen_release': {{'enabled': True}}}}``).
        Enabled: the config's services, else the defaults (water conservation, soil retention, carbon sequestration,
        air purification).
    carbon : dict, optional
        ``inputs.carbon`` keys, as :func:`carbon_sequestration`.
    **inputs : xarray.DataArray
        The other inputs by name (:data:`INPUT_ARGUMENTS`): ``precipitation``, ``precipitation_monthly``, ``et`` or
        ``et0``, ``dem``, ``carbon_flux``, ``r_factor``, ``k_factor``, ``c_factor``, ``p_factor``,
        ``alternate_land_cover``, ``hot_days``, ``storm_precip``, ``water_bodies_m3`` ... (units as in the service
        functions).

    Returns
    -------
    xarray.Dataset
        Every output of the enabled services (units in each ``attrs``) and ``gep_r_yuan`` (yuan/a per pixel: the sum
        of the services' values), float32 (y, x), NaN = nodata.

    Raises
    ------
    TypeError
        An unknown input name.
    InputMismatchError, UnitsError, MissingInputError, ConfigError, TableError
        As the service functions.

    Source
    ------
    GEP-R = Σ of the regulating-service values (:class:`gep_raster.services.model.ServiceModel`); each service's
    method note is in ``attrs['source']``.
    """
    return _evaluate(None, {"land_cover": land_cover, **inputs}, legend=legend, prices=prices, config=config,
                     services=services, carbon=carbon)


for _f in (water_conservation, soil_retention, carbon_sequestration, oxygen_release, air_purification,
           water_purification, climate_regulation, flood_regulation, pest_control, gep_r):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ = (_f.__doc__.replace("{common}", _COMMON.strip("\n").lstrip())
                      .replace("{{", "{").replace("}}", "}"))
del _f


# ------------------------------------------------------------------------------------------------------------------
# a run's inputs as DataArrays
# ------------------------------------------------------------------------------------------------------------------
def open_run_inputs(config, chunks: int | tuple[int, int] = 1024, *, base_dir: str | Path | None = None) -> dict:
    """The rasters of a run configuration as lazy DataArrays on its reference grid, keyed by argument name.

    Read by the pipeline's readers (:func:`gep_raster.grid.xarray_view.open_input` for the core inputs, the same
    sources for the NEP/NPP raster and the 12 monthly rasters), so the values are those a run computes with.

    Parameters
    ----------
    config : str, Path, dict or RunConfig
        The run configuration.
    chunks : int or (int, int)
        Dask chunk side(s) in pixels.
    base_dir : str or Path, optional
        Folder relative paths of a dict config are resolved from.

    Returns
    -------
    dict of str -> xarray.DataArray
        ``land_cover`` (int32, -1 nodata) and, when configured, ``dem`` (m), ``precipitation`` (mm/a, the sum of the
        months for monthly input), ``precipitation_monthly`` ((12, y, x) mm/month), ``et`` or ``et0`` (mm/a),
        ``carbon_flux`` (units = ``inputs.carbon.unit``), ``r_factor``, ``k_factor``, ``c_factor``, ``p_factor``;
        float32 with NaN nodata, rioxarray CRS and transform, ``attrs['units']``.

    Raises
    ------
    ConfigError, InputError
        As :func:`gep_raster.grid.xarray_view.open_input`.
    """
    import xarray as xr

    from .api import load_config
    from .grid.io_read import GridSource
    from .grid.run_inputs import climate_source, reference_grid
    from .grid.xarray_view import open_input, source_to_xarray

    cfg = config if hasattr(config, "inputs") else load_config(config, base_dir=base_dir)
    out = {}
    for key in ("land_cover", "dem", "precipitation", "et", "et0", "r_factor", "k_factor", "c_factor", "p_factor"):
        if getattr(cfg.inputs, key, None) is not None:
            out[key] = open_input(cfg, key, chunks)
    grid = reference_grid(cfg)
    p = cfg.inputs.precipitation
    if p is not None and p.monthly is not None:
        months = climate_source(cfg, "precipitation", p, grid).sources
        stack = xr.concat([source_to_xarray(m, chunks, units="mm/month") for m in months], dim="month")
        out["precipitation_monthly"] = stack.assign_coords(month=np.arange(1, 13)).rename("precipitation_monthly")
    c = cfg.inputs.carbon
    if c.method in ("nep", "npp"):
        src = GridSource("inputs.carbon", cfg.resolve_many(c.path, "inputs.carbon.path"), grid, "continuous",
                         nodata=c.nodata)
        out["carbon_flux"] = source_to_xarray(src, chunks, units=c.unit)
    return out
