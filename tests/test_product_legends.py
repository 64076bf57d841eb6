"""Shipped legends of standard land-cover products (``legend: {product: ...}``, gep_raster/data/legends/).

The expected class codes below are written from each product's class-definition document (not from the CSVs):
CLCD (Yang & Huang 2021, ESSD 13:3907), GlobeLand30 (Chen et al. 2015, ISPRS J. 103:7), ESA WorldCover v100/v200
product user manuals (Zanaga et al. 2021/2022), MCD12Q1 LC_Type1 IGBP (Sulla-Menashe & Friedl 2018 user guide),
Dynamic World band ``label`` (Brown et al. 2022, Sci. Data 9:251).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gep_raster.config import load_config_dict
from gep_raster.config_base import ECOSYSTEMS
from gep_raster.errors import ConfigError, TableError
from gep_raster.legends import PRODUCTS, canonical_product, product_legend, product_path
from gep_raster.tables import load_legend

REPO = Path(__file__).resolve().parents[1]

#: code -> English class name (as the product document names it), per product
EXPECTED = {
    "clcd": {1: "cropland", 2: "forest", 3: "shrub", 4: "grassland", 5: "water", 6: "snow/ice", 7: "barren",
             8: "impervious", 9: "wetland"},
    "globeland30": {10: "cultivated land", 20: "forest", 30: "grassland", 40: "shrubland", 50: "wetland",
                    60: "water bodies", 70: "tundra", 80: "artificial surfaces", 90: "bareland",
                    100: "permanent snow and ice"},
    "esa_worldcover": {10: "tree cover", 20: "shrubland", 30: "grassland", 40: "cropland", 50: "built-up",
                       60: "bare / sparse vegetation", 70: "snow and ice", 80: "permanent water bodies",
                       90: "herbaceous wetland", 95: "mangroves", 100: "moss and lichen"},
    "modis_igbp": {1: "evergreen needleleaf forests", 2: "evergreen broadleaf forests",
                   3: "deciduous needleleaf forests", 4: "deciduous broadleaf forests", 5: "mixed forests",
                   6: "closed shrublands", 7: "open shrublands", 8: "woody savannas", 9: "savannas",
                   10: "grasslands", 11: "permanent wetlands", 12: "croplands", 13: "urban and built-up lands",
                   14: "cropland/natural vegetation mosaics", 15: "permanent snow and ice", 16: "barren",
                   17: "water bodies"},
    "dynamic_world": {0: "water", 1: "trees", 2: "grass", 3: "flooded vegetation", 4: "crops",
                      5: "shrub and scrub", 6: "built", 7: "bare", 8: "snow and ice"},
}
#: codes meaning no data / outside the land area: no row
NODATA = {"clcd": {0}, "globeland30": {0, 255}, "esa_worldcover": {0}, "modis_igbp": {255}, "dynamic_world": set()}

#: ecosystem type of each class (the documented mapping choices of docs/legends.md)
ECOSYSTEM = {
    "clcd": {1: "cropland", 2: "forest", 3: "shrub", 4: "grassland", 5: "water", 6: "bare", 7: "bare", 8: "urban",
             9: "wetland"},
    "globeland30": {10: "cropland", 20: "forest", 30: "grassland", 40: "shrub", 50: "wetland", 60: "water",
                    70: "grassland", 80: "urban", 90: "bare", 100: "bare"},
    "esa_worldcover": {10: "forest", 20: "shrub", 30: "grassland", 40: "cropland", 50: "urban", 60: "bare",
                       70: "bare", 80: "water", 90: "wetland", 95: "wetland", 100: "grassland"},
    "modis_igbp": {1: "forest", 2: "forest", 3: "forest", 4: "forest", 5: "forest", 6: "shrub", 7: "shrub",
                   8: "forest", 9: "forest", 10: "grassland", 11: "wetland", 12: "cropland", 13: "urban",
                   14: "cropland", 15: "bare", 16: "bare", 17: "water"},
    "dynamic_world": {0: "water", 1: "forest", 2: "grassland", 3: "wetland", 4: "cropland", 5: "shrub", 6: "urban",
                      7: "bare", 8: "bare"},
}

PARAM_COLUMNS = ("runoff_coef", "usle_c", "usle_p", "kc", "carbon_tco2_ha", "so2_kg_ha", "nox_kg_ha", "dust_kg_ha",
                 "storm_runoff_coef", "cod_kg_ha", "nh3n_kg_ha", "tp_kg_ha")

#: rows the methods note (docs/gep-methods.md §2.5, 高天岩 2017) marks [V]: (column, row) -> (ecosystem, value)
V_ROWS = {
    ("so2_kg_ha", "Needleleaf forest 针叶林"): ("forest", 215.60),
    ("dust_kg_ha", "Needleleaf forest 针叶林"): ("forest", 33200),
    ("so2_kg_ha", "Broadleaf forest 阔叶林"): ("forest", 88.65),
    ("dust_kg_ha", "Broadleaf forest 阔叶林"): ("forest", 10110),
    ("so2_kg_ha", "Mixed forest 针阔混交林"): ("forest", 152.13),
    ("dust_kg_ha", "Mixed forest 针阔混交林"): ("forest", 21660),
    ("so2_kg_ha", "Shrub 灌木林"): ("shrub", 92.10),
    ("dust_kg_ha", "Shrub 灌木林"): ("shrub", 11400),
}
#: rows of the methods note's runoff-coefficient table (§2.1), marked [V2] there: row -> (ecosystem, alpha)
V2_RUNOFF = {"常绿阔叶林": ("forest", 0.0267), "常绿针叶林": ("forest", 0.0302), "针阔混交林": ("forest", 0.0229),
             "落叶阔叶林": ("forest", 0.0133), "落叶针叶林": ("forest", 0.0088)}

_ITEM = re.compile(r"^(?P<cols>[a-z0-9_]+(?:, [a-z0-9_]+)*) \[(?P<mark>V|V-calc|V2|U)\] (?P<src>.+)$")
_NONE = re.compile(r"^(?P<cols>[a-z0-9_]+(?:, [a-z0-9_]+)*): (?P<text>.+)$")


def _items(note: str) -> list[tuple[list[str], str | None, str]]:
    """``notes`` cell -> [(columns, mark or None, text)]."""
    out = []
    for item in note.split(" | "):
        m = _ITEM.match(item)
        if m:
            out.append((m["cols"].split(", "), m["mark"], m["src"]))
            continue
        m = _NONE.match(item)
        assert m, f"notes item {item!r} is neither 'col [MARK] source' nor 'col: text'"
        out.append((m["cols"].split(", "), None, m["text"]))
    return out


def _cfg(legend: dict, base_dir: Path | None = None):
    off = {k: {"enabled": False} for k in ("water_conservation", "soil_retention", "carbon_sequestration",
                                           "air_purification")}
    return load_config_dict({"name": "t", "inputs": {"land_cover": {"path": "lc.tif"}}, "legend": legend,
                             "output": {"dir": "out"}, "services": off}, base_dir=base_dir)


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("product", list(EXPECTED))
def test_every_class_of_the_definition_has_a_row(product):
    df = product_legend(product).set_index("code")
    assert set(df.index) == set(EXPECTED[product]), f"{product}: codes differ from the class definition"
    assert not set(df.index) & NODATA[product]
    assert set(PRODUCTS[product].nodata) == NODATA[product]
    for code, name in EXPECTED[product].items():
        row = df.loc[code]
        assert row["name"].lower().replace("_", " ") == name, (product, code)
        assert isinstance(row["name_zh"], str) and re.search(r"[\u4e00-\u9fff]", row["name_zh"]), (product, code)
        assert row["ecosystem"] in ECOSYSTEMS
        assert row["ecosystem"] == ECOSYSTEM[product][code], (product, code)
    assert product_path(product).is_file()
    assert product_path(product).parent.name == "legends"


@pytest.mark.parametrize("product", list(EXPECTED))
def test_evidence_marks_are_traceable(product):
    df = product_legend(product)
    params = [c for c in df.columns if c in PARAM_COLUMNS]
    assert set(df.columns) - set(params) == {"code", "name", "name_zh", "ecosystem", "notes"}
    for _, row in df.iterrows():
        note = row["notes"]
        assert note and note != "nan", f"{product} {row['code']}: empty notes"
        items = _items(note)
        marked = {c: (mark, src) for cols, mark, src in items if mark for c in cols}
        for cols, _, _ in items:
            assert all(c in params or c == "ecosystem" for c in cols), (product, row["code"], cols)
        for col in params:
            v = row[col]
            if pd.isna(v):
                assert col not in marked, f"{product} {row['code']}: {col} empty but marked"
                assert any(col in cols for cols, _, _ in items), f"{product} {row['code']}: {col} empty, not noted"
                continue
            assert col in marked, f"{product} {row['code']}: {col} = {v} has no evidence mark in notes"
            mark, src = marked[col]
            assert mark in ("V", "V2", "U"), (product, row["code"], col, mark)
            if mark == "V":
                hits = [(key, val) for key, val in V_ROWS.items() if key[0] == col and f"'{key[1]}'" in src]
                assert len(hits) == 1, f"{product} {row['code']}: {col} [V] cites no [V] row of the methods note"
                eco, value = hits[0][1]
                assert row["ecosystem"] == eco, f"{product} {row['code']}: [V] row of type {eco} used for " \
                                                f"{row['ecosystem']}"
                assert np.isclose(v, value), (product, row["code"], col, v, value)
            if mark == "V2":
                assert col == "runoff_coef", (product, row["code"], col)
                hits = [r for r in V2_RUNOFF if f"row {r} " in src]
                assert len(hits) == 1, (product, row["code"], src)
                eco, value = V2_RUNOFF[hits[0]]
                assert row["ecosystem"] == eco and np.isclose(v, value), (product, row["code"])


def test_generic_forest_classes_are_not_marked_verified():
    """A single-type row of the methods note transferred to a generic product class is an assumption [U]."""
    for product, code in (("clcd", 2), ("globeland30", 20), ("esa_worldcover", 10), ("dynamic_world", 1),
                          ("modis_igbp", 8)):
        row = product_legend(product).set_index("code").loc[code]
        for cols, mark, src in _items(row["notes"]):
            if set(cols) & {"runoff_coef", "so2_kg_ha", "dust_kg_ha"}:
                assert mark == "U", (product, code, cols, mark)


def test_verified_rows_are_verified_in_the_methods_note():
    """The [V]/[V2] rows the tests accept appear so marked in the methods note (when the note is present)."""
    doc = REPO.parent / "shared" / "docs" / "gep-methods.md"
    if not doc.is_file():
        pytest.skip(f"methods note not found at {doc}")
    text = doc.read_text(encoding="utf-8")
    for row, so2, dust in (("Needleleaf forest 针叶林", "215.60", "33,200"), ("Broadleaf forest 阔叶林", "88.65", "10,110"),
                           ("Mixed forest 针阔混交林", "152.13", "21,660"), ("Shrub 灌木林", "92.10", "11,400")):
        assert f"| {row} | {so2} | {dust} |" in text
    assert "The values are **[V]** in the text" in text
    for row, (_, alpha) in V2_RUNOFF.items():
        assert re.search(rf"{row}[^|]*\| {alpha * 100:.2f} \|", text), row
    assert "hard-coded in the national water-conservation-importance script **[V2]**" in text


# ---------------------------------------------------------------------------------------------------------------
def test_product_loads_through_load_legend():
    cfg = _cfg({"product": "clcd"})
    lg = load_legend(cfg, {"usle_p": (0.0, 1.0, "-", "P")})
    assert lg.product == "clcd" and lg.nodata_codes == (0,)
    assert lg.codes.tolist() == list(range(1, 10))
    assert lg.sources == [str(product_path("clcd"))] and Path(lg.sources[0]).is_file()
    assert lg.path == product_path("clcd")
    assert lg.table.loc[2, "ecosystem"] == "forest" and lg.table.loc[8, "ecosystem"] == "urban"
    assert lg.lut("runoff_coef")[2] == pytest.approx(0.0229)
    assert np.isnan(lg.lut("runoff_coef")[0])  # no-data code 0: no row
    assert "clcd" in lg.label


def test_alias_and_case():
    assert _cfg({"product": "WorldCover"}).legend.product == "esa_worldcover"
    assert canonical_product("MCD12Q1") == "modis_igbp"
    assert canonical_product("Dynamic-World") == "dynamic_world"


def test_empty_product_cells_needed_by_a_service_name_the_classes():
    cfg = _cfg({"product": "clcd"})
    with pytest.raises(TableError, match=r"runoff_coef.*\[1, 5, 6, 7, 8, 9\].*user table"):
        load_legend(cfg, {"runoff_coef": (0.0, 1.0, "fraction", "runoff")})
    with pytest.raises(TableError, match=r"column 'kc' is missing.*product legend 'clcd'"):
        load_legend(cfg, {"kc": (0.0, 2.0, "-", "Kc")})


def test_user_table_overrides_a_cell_and_adds_a_class(tmp_path):
    (tmp_path / "local.csv").write_text(
        "code,name,name_zh,ecosystem,usle_c,usle_p,kc,notes\n"
        "9,,,,0.02,,,usle_c [U] local plot study\n"
        "20,paddy (local),水田,cropland,0.15,0.5,1.1,local class [U]\n", encoding="utf-8")
    cfg = _cfg({"product": "clcd", "path": "local.csv"}, base_dir=tmp_path)
    lg = load_legend(cfg, {"usle_c": (0.0, 1.0, "-", "C"), "usle_p": (0.0, 1.0, "-", "P")})
    base = product_legend("clcd").set_index("code")
    t = lg.table
    assert lg.codes.tolist() == [*range(1, 10), 20]
    assert t.loc[9, "usle_c"] == pytest.approx(0.02)  # overridden
    assert t.loc[9, "ecosystem"] == "wetland" and t.loc[9, "name"] == "wetland"  # empty cells keep the product's
    assert t.loc[9, "usle_p"] == pytest.approx(1.0)
    # the product's note on the replaced column is dropped, the rest kept, the user's note appended
    assert "usle_c: no value" in base.loc[9, "notes"] and "usle_c: no value" not in t.loc[9, "notes"]
    assert "runoff_coef: no value" in t.loc[9, "notes"] and "usle_p [U]" in t.loc[9, "notes"]
    assert t.loc[9, "notes"].endswith("usle_c from the user table local.csv: usle_c [U] local plot study")
    assert t.loc[2, "notes"] == base.loc[2, "notes"] and t.loc[2, "usle_c"] == pytest.approx(base.loc[2, "usle_c"])
    assert t.loc[20, "ecosystem"] == "cropland" and t.loc[20, "kc"] == pytest.approx(1.1)
    assert np.isnan(t.loc[2, "kc"])  # a column the product lacks: empty on the other classes
    assert t.loc[20, "usle_p"] == pytest.approx(0.5) and t.loc[20, "notes"] == "local class [U]"
    assert np.isnan(t.loc[20, "runoff_coef"])  # not given for the new class: empty
    assert lg.sources == [str(product_path("clcd")), str(tmp_path / "local.csv")]
    assert lg.path == tmp_path / "local.csv" and lg.product == "clcd"


def test_user_table_replacing_one_of_two_columns_of_a_note_item(tmp_path):
    (tmp_path / "so2.csv").write_text("code,so2_kg_ha\n3,50\n", encoding="utf-8")
    lg = load_legend(_cfg({"product": "clcd", "path": "so2.csv"}, base_dir=tmp_path))
    note = lg.table.loc[3, "notes"]
    assert lg.table.loc[3, "so2_kg_ha"] == pytest.approx(50) and lg.table.loc[3, "dust_kg_ha"] == pytest.approx(11400)
    assert "| dust_kg_ha [V] methods note §2.5 table row 'Shrub 灌木林'" in note
    assert "so2_kg_ha, dust_kg_ha" not in note and note.endswith("so2_kg_ha from the user table so2.csv")


def test_user_table_with_product_errors(tmp_path):
    (tmp_path / "noeco.csv").write_text("code,usle_c\n30,0.1\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"\[30\].*ecosystem"):
        load_legend(_cfg({"product": "clcd", "path": "noeco.csv"}, base_dir=tmp_path))
    (tmp_path / "nodata.csv").write_text("code,ecosystem\n0,water\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"no-data code"):
        load_legend(_cfg({"product": "clcd", "path": "nodata.csv"}, base_dir=tmp_path))
    (tmp_path / "badeco.csv").write_text("code,ecosystem\n3,jungle\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"unknown type"):
        load_legend(_cfg({"product": "clcd", "path": "badeco.csv"}, base_dir=tmp_path))
    (tmp_path / "renamed.csv").write_text("lucode,C\n9,0.03\n", encoding="utf-8")
    lg = load_legend(_cfg({"product": "clcd", "path": "renamed.csv", "code_column": "lucode",
                           "columns": {"usle_c": "C"}}, base_dir=tmp_path), {"usle_c": (0.0, 1.0, "-", "C")})
    assert lg.table.loc[9, "usle_c"] == pytest.approx(0.03)


def test_join_works_with_a_product(tmp_path):
    (tmp_path / "bio.csv").write_text("lucode,Kc\n" + "".join(f"{c},0.{c}\n" for c in range(1, 10)),
                                      encoding="utf-8")
    lg = load_legend(_cfg({"product": "clcd", "join": [{"path": "bio.csv", "columns": {"kc": "Kc"}}]},
                          base_dir=tmp_path), {"kc": (0.0, 2.0, "-", "Kc")})
    assert lg.table.loc[3, "kc"] == pytest.approx(0.3)
    assert lg.sources[-1] == str(tmp_path / "bio.csv")
    with pytest.raises(TableError, match=r"already in the legend.*legend.path"):
        (tmp_path / "bio2.csv").write_text("lucode,c\n1,0.1\n", encoding="utf-8")
        load_legend(_cfg({"product": "clcd", "join": [{"path": "bio2.csv", "columns": {"usle_c": "c"}}]},
                         base_dir=tmp_path))


def test_unknown_product_and_missing_legend_are_clear_errors():
    with pytest.raises(ConfigError, match=r"unknown land-cover product 'corine'.*clcd, globeland30, esa_worldcover, "
                                          r"modis_igbp, dynamic_world"):
        _cfg({"product": "corine"})
    with pytest.raises(ConfigError, match=r"clcd, globeland30"):
        product_legend("corine")
    with pytest.raises(ConfigError, match=r"legend.*give 'product'.*'path'"):
        _cfg({})


def test_legend_path_alone_works_as_before(tmp_path):
    (tmp_path / "legend.csv").write_text("code,ecosystem,usle_c\n1,forest,0.01\n2,water,0\n", encoding="utf-8")
    lg = load_legend(_cfg({"path": "legend.csv"}, base_dir=tmp_path), {"usle_c": (0.0, 1.0, "-", "C")})
    assert lg.product is None and lg.nodata_codes == () and lg.sources == [str(tmp_path / "legend.csv")]
    assert lg.codes.tolist() == [1, 2] and lg.label == str(tmp_path / "legend.csv")


def test_legends_ship_in_the_wheel():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("tomllib needs Python >= 3.11")
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "legends/*.csv" in data["tool"]["setuptools"]["package-data"]["gep_raster.data"]
    shipped = sorted(p.name for p in (REPO / "gep_raster" / "data" / "legends").glob("*.csv"))
    assert shipped == sorted(p.file for p in PRODUCTS.values())


def test_product_nodata_code_in_the_raster_reads_as_no_data(tmp_path):
    """CLCD code 0 (no data, no row) in a land cover that does not declare it as nodata: the legend check of the
    run accepts it (codes that are neither classes nor no data of the product still stop it)."""
    import rasterio
    from rasterio.transform import from_origin

    from gep_raster.grid.io_read import GridSource
    from gep_raster.grid.reference import RefGrid
    from gep_raster.pipeline.prepare import check_legend
    from gep_raster.pipeline.state import RunState

    f = tmp_path / "lc.tif"
    codes = np.array([[0, 1, 2], [2, 0, 9]], dtype=np.uint8)
    with rasterio.open(f, "w", driver="GTiff", width=3, height=2, count=1, dtype="uint8", crs="EPSG:32650",
                       transform=from_origin(500000, 3000000, 30, 30)) as ds:
        ds.write(codes, 1)
    grid = RefGrid.from_raster(f)
    src = GridSource("inputs.land_cover", [f], grid, "categorical")
    st = RunState(cfg=None, timer=None)
    st.lc_source, st.scan, st.nthreads = src, 64, 1
    st.legend = load_legend(_cfg({"product": "clcd"}, tmp_path))
    check_legend(st)
    assert st.hist == {0: 2, 1: 1, 2: 2, 9: 1} and 0 not in st.legend.codes
    st.legend = load_legend(_cfg({"product": "esa_worldcover"}, tmp_path))   # 1, 2, 9 are not WorldCover codes
    with pytest.raises(TableError, match=r"class code\(s\) \[1, 2, 9\]"):
        check_legend(st)
