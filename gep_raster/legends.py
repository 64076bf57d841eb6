"""Shipped legends of standard land-cover products (``legend: {product: clcd}`` in the run configuration).

One CSV per product in ``gep_raster/data/legends/``: one row per class code of the product's class
definition, with ``name`` (English), ``name_zh`` (Chinese), the ``ecosystem`` type the class is counted as
(one of :data:`gep_raster.config_base.ECOSYSTEMS`), the parameter columns for which the project's methods note
gives a value for that ecosystem type (``runoff_coef``, ``usle_c``, ``usle_p``, ``so2_kg_ha``,
``dust_kg_ha``; empty where it gives none) and ``notes``: per column the evidence mark and the row of the
methods note the number was taken from. A user table (``legend.path``) extends or overrides the product table
(:func:`gep_raster.tables.load_legend`); ``docs/legends.md`` explains the mapping choices.

No-data codes of a product (CLCD 0, IGBP 255 ...) have no row: pixels holding them must read as no data
(declare the code as ``inputs.land_cover.nodata``), since a class code present in the land cover without a
legend row stops a run at the legend check.

This module imports nothing heavy at import time (the configuration validates product names with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, TableError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Product:
    """One land-cover product whose legend ships with the engine."""

    name: str
    #: file name in ``gep_raster/data/legends/``
    file: str
    title: str
    version: str
    resolution: str
    #: the document that defines the classes and their codes
    citation: str
    #: codes that mean no data (or outside the land area) and therefore have no legend row
    nodata: tuple[int, ...]
    #: what the no-data codes mean, in words
    nodata_note: str


PRODUCTS: dict[str, Product] = {p.name: p for p in (
    Product(
        "clcd", "clcd.csv", "CLCD: China Land Cover Dataset (annual, Landsat)",
        "annual maps 1985 onward (Zenodo concept DOI 10.5281/zenodo.4417809)", "30 m",
        "Yang, J. & Huang, X. (2021). The 30 m annual land cover dataset and its dynamics in China from 1990 to "
        "2019. Earth System Science Data 13, 3907-3925. doi:10.5194/essd-13-3907-2021",
        (0,), "0 = no data"),
    Product(
        "globeland30", "globeland30.csv", "GlobeLand30 (National Geomatics Center of China, NGCC)",
        "2000, 2010, 2020 (V2020)", "30 m",
        "Chen, J. et al. (2015). Global land cover mapping at 30 m resolution: a POK-based operational approach. "
        "ISPRS Journal of Photogrammetry and Remote Sensing 103, 7-27. doi:10.1016/j.isprsjprs.2014.09.002",
        (0, 255), "0 = no data; 255 = ocean (outside the land area: no row, add one in a user table to count it)"),
    Product(
        "esa_worldcover", "esa_worldcover.csv", "ESA WorldCover 10 m",
        "v100 (2020) and v200 (2021)", "10 m",
        "Zanaga, D. et al. (2021). ESA WorldCover 10 m 2020 v100, doi:10.5281/zenodo.5571936, and Zanaga, D. et al. "
        "(2022). ESA WorldCover 10 m 2021 v200, doi:10.5281/zenodo.7254221; class definitions in the Product User "
        "Manual of each version",
        (0,), "0 = no data"),
    Product(
        "modis_igbp", "modis_igbp.csv", "MODIS MCD12Q1 land cover, IGBP classification (layer LC_Type1)",
        "Collection 6 / 6.1", "500 m",
        "Sulla-Menashe, D. & Friedl, M. A. (2018). User Guide to Collection 6 MODIS Land Cover (MCD12Q1 and "
        "MCD12C1) Product. USGS/NASA LP DAAC (IGBP legend of LC_Type1)",
        (255,), "255 = unclassified"),
    Product(
        "dynamic_world", "dynamic_world.csv", "Dynamic World (band 'label')",
        "V1 (Earth Engine collection GOOGLE/DYNAMICWORLD/V1)", "10 m",
        "Brown, C. F. et al. (2022). Dynamic World, near real-time global 10 m land use land cover mapping. "
        "Scientific Data 9, 251. doi:10.1038/s41597-022-01307-4",
        (), "no no-data code: 0 is water; masked pixels have no value, so give the nodata value written on export "
            "as inputs.land_cover.nodata"),
)}

#: other spellings accepted for the product names (lower case, '-' and ' ' read as '_')
ALIASES: dict[str, str] = {
    "worldcover": "esa_worldcover", "esa_wc": "esa_worldcover",
    "mcd12q1": "modis_igbp", "igbp": "modis_igbp", "modis": "modis_igbp",
    "dynamicworld": "dynamic_world", "dw": "dynamic_world",
    "globeland": "globeland30", "gl30": "globeland30",
}


def product_names() -> list[str]:
    """The names of the shipped product legends."""
    return list(PRODUCTS)


def canonical_product(name: str) -> str:
    """The catalogue name of ``name`` (case, '-' and ' ' ignored; aliases such as ``worldcover``, ``mcd12q1``).

    Raises
    ------
    ConfigError
        ``name`` is no known product; the message lists the known ones.
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in PRODUCTS:
        raise ConfigError(f"legend.product: unknown land-cover product '{name}'; known products: "
                          f"{', '.join(PRODUCTS)} (or give your own legend CSV as legend.path)")
    return key


def get_product(name: str) -> Product:
    """The catalogue entry of ``name`` (see :func:`canonical_product`); ConfigError for an unknown product."""
    return PRODUCTS[canonical_product(name)]


def _resource(product: Product):
    return resources.files("gep_raster.data").joinpath("legends", product.file)


def product_path(name: str) -> Path:
    """Path of the shipped legend CSV of ``name`` (inside the installed package)."""
    return Path(str(_resource(get_product(name))))


def product_legend(name: str) -> "pd.DataFrame":
    """The shipped legend of a product, as read from its CSV.

    Parameters
    ----------
    name : str
        A product name of :data:`PRODUCTS` (or an alias).

    Returns
    -------
    pandas.DataFrame
        One row per class code: ``code`` (int64), ``name``, ``name_zh``, ``ecosystem``, the parameter columns
        (float, NaN where the methods note gives no value) and ``notes``.

    Raises
    ------
    ConfigError
        Unknown product (the message lists the known ones).
    TableError
        The shipped file is missing or unreadable (a broken installation).
    """
    import pandas as pd

    product = get_product(name)
    res = _resource(product)
    try:
        with res.open("r", encoding="utf-8") as fh:
            df = pd.read_csv(fh)
    except Exception as exc:  # missing file, bad CSV
        raise TableError(f"legend.product '{product.name}': cannot read the shipped legend {res}: {exc}") from None
    df["code"] = df["code"].astype("int64")
    for col in ("name", "name_zh", "ecosystem", "notes"):
        df[col] = df[col].astype(str)
    return df


def describe(name: str) -> dict:
    """The catalogue entry of a product as a plain dict (for manifests and docs)."""
    p = get_product(name)
    return {"product": p.name, "title": p.title, "version": p.version, "resolution": p.resolution,
            "class_definition": p.citation, "nodata": list(p.nodata), "nodata_note": p.nodata_note,
            "file": f"gep_raster/data/legends/{p.file}"}
