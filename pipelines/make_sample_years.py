#!/usr/bin/env python
"""Three accounting years of the embedded sample (2024, 2025, 2026) for the multi-year GEP account demo.

Provenance: derived only from files of this repository — ``pipelines/sample.yaml`` (the run),
``pipelines/tables/sample_statistics.csv`` (ILLUSTRATIVE [EX] statistics), ``pipelines/tables/cpi_china.csv``
(the CPI rows 2005-2024), the development parcel of ``pipelines/sample_development.yaml`` (the one of
``pipelines/make_sample_parcels.py``) and the township polygons, codes and names of
``sample_tiles/data/polygons/townships.gpkg``. Everything that differs between the years is
INVENTED for the demo ([EX]): the land-cover changes, the climate factors, the growth of the statistics, the
2025/2026 CPI rates and the development statistics are not observations of any place.

Writes::

    pipelines/tables/sample_cpi_2010_2026.csv     the CPI rows 2005-2024 of cpi_china.csv (verbatim) + 2025, 2026 [EX]
    pipelines/sample_years/sample_<year>.yaml     pipelines/sample.yaml with the year's changes (below)
    pipelines/sample_years/statistics_<year>.csv  the sample statistics x the year's growth factor, year set
    pipelines/sample_years/development_statistics.csv   per township population, GDP per capita [EX]
    pipelines/sample_years/targets.yaml           illustrative assessment targets (gep assess)
    pipelines/sample_years/allocation_rule.yaml   illustrative allocation rule (gep allocate)

What changes between the years (:data:`YEARS`):

* 2024: the sample as it is (land cover, climate), prices moved from their price_year (2010) to 2024 by the CPI;
* 2025: restoration — every shrub, dry cropland and bare pixel (classes 5, 8, 12; 1,587 px, 1.43 km²) of township
  331122104 (高山乡) becomes evergreen broadleaf forest (class 1), NEP 2.2 t C/ha/a on them; a wet year
  (precipitation x 1.06, ET x 1.02); statistics x 1.04;
* 2026: the 2025 restoration plus a development in township 331122103 (溪口镇): the parcel of
  ``sample_development.yaml`` (510 m x 600 m, 340 px) and a second phase abutting it on the west (900 m x 600 m,
  its forest pixels only: 570 px) become built-up (class 11), NEP 0 on them; a dry, hot year (precipitation
  x 0.93, ET x 1.07); statistics x 1.08.

The factors were chosen so that the demo's assessment is not on a knife edge (checked on the runs): GEP at
comparable prices about +4.3 % over 2024 in 2025 (target +3 % met) and about +0.2 % in 2026 (not met); GEP-R
rises everywhere in 2025 (高山乡 most, about +6 %) and falls everywhere in 2026 (溪口镇 most, about -5.8 %, -7 % at
comparable prices; the other townships -2 to -4 %).

Relative paths of ``sample.yaml`` are re-based (the configs live one folder deeper: every relative path resolves
from the config's folder). Determinism: no timestamps, no random numbers, fixed key order, ``\\n`` line ends; a
rerun gives identical bytes (``tests/test_sample_years.py`` checks the committed files against a fresh run).

Usage (from the repository root)::

    .venv/bin/python pipelines/make_sample_years.py                 # writes the files above
    .venv/bin/python pipelines/make_sample_years.py --out /tmp/sy   # <out>/sample_years/..., <out>/tables/...
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
FOLDER = "sample_years"
CPI_NAME = "sample_cpi_2010_2026.csv"
GENERATOR = "pipelines/make_sample_years.py"

#: the restored township and the developed township of the demo
RESTORED_TOWN = "331122104"   # 高山乡
DEVELOPED_TOWN = "331122103"  # 溪口镇

#: NEP (t C/ha/a) set on the restored pixels: [EX] the lower end of the synthetic broadleaf NEP of the sample
#: generator (2.2-4.0 t C/ha/a, sample_tiles/PROVENANCE.md), as in pipelines/sample_restoration.yaml
RESTORED_NEP = 2.2
#: NEP of built-up: [EX] what the sample's NEP generator gives built-up (0), as in pipelines/sample_development.yaml
BUILT_UP_NEP = 0.0

RESTORATION_EDIT = {
    "path": "../../sample_tiles/data/polygons/townships.gpkg",
    "layer": "townships",
    "where": f"town_code == '{RESTORED_TOWN}'",
    "to_class": 1,
    "from_classes": [5, 8, 12],
    "set_inputs": {"carbon": RESTORED_NEP},
}

#: second phase of the development: 900 m x 600 m abutting the parcel of sample_development.yaml on its west
#: (x 606300-607200, y 3120040-3120640: on pixel edges, wholly in 溪口镇); only its forest pixels are built up
DEV_PHASE2_WKT = ("POLYGON ((606300 3120040, 607200 3120040, 607200 3120640, 606300 3120640, "
                  "606300 3120040))")

#: illustrative CPI rates (previous year = 100) of the years after the last real row of cpi_china.csv [EX]
CPI_EXTRA = {2025: 100.5, 2026: 101.5}

#: year -> changes against pipelines/sample.yaml (all ILLUSTRATIVE [EX])
YEARS = {
    2024: {"precip_scale": 1.00, "et_scale": 1.00, "growth": 1.00, "restoration": False, "development": False,
           "climate": "the sample's climate", "description": "base year: the sample as it is"},
    2025: {"precip_scale": 1.06, "et_scale": 1.02, "growth": 1.04, "restoration": True, "development": False,
           "climate": "wet year",
           "description": "shrub, dry cropland and bare land of 高山乡 restored to broadleaf forest; a wet year"},
    2026: {"precip_scale": 0.93, "et_scale": 1.07, "growth": 1.08, "restoration": True, "development": True,
           "climate": "dry, hot year",
           "description": "the 2025 restoration + 0.82 km2 of forest in 溪口镇 built up; a dry, hot year"},
}

#: per township: population (persons) and GDP per capita (yuan) of 2024: INVENTED [EX] magnitudes for a
#: Lishui-like mountain county (county seat richest), not statistics; later years grown by the rates below
DEVELOPMENT = {
    "331122100": (68400, 96500),
    "331122101": (14200, 58300),
    "331122102": (11800, 64100),
    "331122103": (9600, 61700),
    "331122104": (12500, 52800),
    "331122105": (13900, 55600),
}
#: [EX] invented: nominal GDP per capita +5 %/a; population +1 %/a in the county seat (331122100), -0.5 %/a elsewhere
GDP_GROWTH = 1.05
POP_GROWTH = {"331122100": 1.01}
POP_GROWTH_OTHER = 0.995

#: config keys whose string values are file paths (re-based one folder deeper)
PATH_KEYS = ("path", "monthly", "table", "dir", "price_index")


def _header(lines: list[str]) -> str:
    return "".join(f"# {s}".rstrip() + "\n" for s in lines)


def _rebase(value, key=None):
    """Relative paths of a config of ``pipelines/`` as seen from ``pipelines/sample_years/``."""
    if isinstance(value, dict):
        return {k: _rebase(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, key) for v in value]
    if isinstance(value, str) and key in PATH_KEYS and not value.startswith("/") and "://" not in value \
            and not value.startswith("${"):
        return "../" + value
    return value


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _development_wkt() -> str:
    import yaml

    dev = yaml.safe_load((PIPELINES / "sample_development.yaml").read_text(encoding="utf-8"))
    (edit,) = dev["scenario"]["edits"]
    return edit["wkt"]


def year_config(year: int) -> dict:
    """The run configuration of ``year`` (a mapping, paths as written in pipelines/sample_years/)."""
    import yaml

    base = yaml.safe_load((PIPELINES / "sample.yaml").read_text(encoding="utf-8"))
    for s in _strings(base):  # every relative file path of sample.yaml must be under a key that is re-based
        if not s.startswith("/") and (PIPELINES / s).exists() and s not in _path_values(base):
            raise SystemExit(f"make_sample_years: '{s}' in sample.yaml looks like a path under a key not in "
                             f"PATH_KEYS; add the key")
    spec = YEARS[year]
    cfg = _rebase(base)
    cfg["name"] = f"sample_{year}"
    cfg["description"] = (f"Synthetic county (示范县), accounting year {year} of the multi-year demo: "
                          f"{spec['description']} (ILLUSTRATIVE)")
    cfg["accounting_year"] = year
    cfg["inputs"]["precipitation"]["scale"] = spec["precip_scale"]
    cfg["inputs"]["et"]["scale"] = spec["et_scale"]
    cfg["economic_accounts"]["table"] = f"statistics_{year}.csv"
    out = {}
    for k, v in cfg.items():
        if k == "economic_accounts":
            out["prices"] = {"price_index": f"../tables/{CPI_NAME}"}
        if k == "output":
            edits = []
            if spec["restoration"]:
                edits.append(dict(RESTORATION_EDIT))
            if spec["development"]:
                edits.append({"wkt": _development_wkt(), "crs": "EPSG:32650", "to_class": 11,
                              "set_inputs": {"carbon": BUILT_UP_NEP}})
                edits.append({"wkt": DEV_PHASE2_WKT, "crs": "EPSG:32650", "to_class": 11,
                              "from_classes": [1, 2, 3, 4], "set_inputs": {"carbon": BUILT_UP_NEP}})
            if edits:
                out["scenario"] = {
                    "name": f"sample_{year}_land_cover",
                    "description": ("restoration: shrub, dry cropland and bare (5, 8, 12) of 高山乡 "
                                    f"({RESTORED_TOWN}) to broadleaf forest (1)"
                                    + ("; development: the parcel of pipelines/sample_development.yaml and a "
                                       f"second phase west of it, forest of 溪口镇 ({DEVELOPED_TOWN}) to built-up "
                                       "(11)" if spec["development"] else "")
                                    + "; synthetic demo"),
                    "edits": edits}
        out[k] = v
    out["output"] = dict(out["output"], dir=f"../../out/sample_years/{year}")
    return out


def _path_values(cfg) -> set:
    found = set()

    def walk(v, key=None):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif isinstance(v, str) and key in PATH_KEYS:
            found.add(v)
    walk(cfg)
    return found


def year_yaml(year: int) -> str:
    import yaml

    spec = YEARS[year]
    lines = [f"GENERATED by {GENERATOR} from pipelines/sample.yaml: do not edit, rerun the generator.",
             f"Accounting year {year} of the multi-year demo on the synthetic sample (see README.md here; the",
             "assumptions of the run itself are commented in pipelines/sample.yaml). ILLUSTRATIVE [EX], invented:",
             f"climate: precipitation x {spec['precip_scale']:.2f}, ET x {spec['et_scale']:.2f} "
             f"({spec['climate']});",
             f"statistics_{year}.csv: the sample statistics x {spec['growth']:.2f};",
             f"prices: moved from price_year 2010 to {year} by ../tables/{CPI_NAME}"
             + (" (2025-2026 rates [EX])." if year > 2024 else ".")]
    if spec["restoration"]:
        lines.append(f"scenario: restored pixels get NEP {RESTORED_NEP} t C/ha/a [EX] (lower end of the "
                     "sample's broadleaf NEP,")
        lines.append("sample_tiles/PROVENANCE.md; as in pipelines/sample_restoration.yaml)"
                     + (f"; built-up NEP {BUILT_UP_NEP} [EX] (as in" if spec["development"] else "."))
        if spec["development"]:
            lines.append("pipelines/sample_development.yaml).")
    body = yaml.safe_dump(year_config(year), allow_unicode=True, sort_keys=False, width=120,
                          default_flow_style=None)
    body = body.replace(f"set_inputs: {{carbon: {RESTORED_NEP}}}\n",
                        f"set_inputs: {{carbon: {RESTORED_NEP}}}   # NEP of the restored forest, t C/ha/a [EX]\n")
    body = body.replace(f"set_inputs: {{carbon: {BUILT_UP_NEP}}}\n",
                        f"set_inputs: {{carbon: {BUILT_UP_NEP}}}   # NEP of built-up, t C/ha/a [EX]\n")
    return _header(lines) + body


def cpi_csv() -> str:
    src = (PIPELINES / "tables" / "cpi_china.csv").read_text(encoding="utf-8").splitlines()
    header, rows = src[0], src[1:]
    assert header == "year,index,annual_rate,source,evidence", header
    keep = [r for r in rows if int(r.split(",", 1)[0]) <= 2024]
    last = next(csv.reader([keep[-1]]))
    assert last[0] == "2024", last
    index = float(last[1])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for year, rate in sorted(CPI_EXTRA.items()):
        index = round(index * rate / 100.0, 6)
        w.writerow([year, f"{index:.6f}", f"{rate:.1f}",
                    f"ILLUSTRATIVE [EX], NOT a statistic: annual rate {rate - 100:+.1f} % invented for the "
                    f"multi-year sample demo ({GENERATOR}); index = previous year x rate / 100; replace with the "
                    "NBS value for real accounts", "EX"])
    return "\n".join([header] + keep) + "\n" + buf.getvalue()


def statistics_csv(year: int) -> str:
    growth = YEARS[year]["growth"]
    text = (PIPELINES / "tables" / "sample_statistics.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    fields = list(rows[0])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        assert int(r["year"]) == 2024, r
        r = dict(r)
        r["value_yuan"] = str(int(round(int(r["value_yuan"]) * growth)))
        r["year"] = str(year)
        if year != 2024:
            r["notes"] = (f"{r['notes']}; {year}: the 2024 value x {growth:.2f}, illustrative nominal growth [EX] "
                          f"({GENERATOR})")
        w.writerow(r)
    return buf.getvalue()


def development_csv() -> str:
    import geopandas as gpd

    towns = gpd.read_file(REPO / "sample_tiles" / "data" / "polygons" / "townships.gpkg")
    names = dict(zip(towns["town_code"].astype(str), towns["town_name"]))
    assert set(names) == set(DEVELOPMENT), (sorted(names), sorted(DEVELOPMENT))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["town_code", "town_name", "year", "population", "gdp_per_capita_yuan", "source", "evidence"])
    for year in sorted(YEARS):
        k = year - min(YEARS)
        for code in sorted(DEVELOPMENT):
            pop, gdp = DEVELOPMENT[code]
            pop = int(round(pop * POP_GROWTH.get(code, POP_GROWTH_OTHER) ** k / 10.0)) * 10
            gdp = int(round(gdp * GDP_GROWTH ** k / 100.0)) * 100
            w.writerow([code, names[code], year, pop, gdp,
                        f"ILLUSTRATIVE [EX], invented for the allocation demo ({GENERATOR}), not statistics", "EX"])
    return buf.getvalue()


TARGETS = """\
# GENERATED by {gen}: do not edit, rerun the generator.
# ILLUSTRATIVE assessment targets for the multi-year sample demo (gep assess), modelled on the Sanming pilot
# plan's kind of targets (GEP +3 % over the base year at comparable prices, GEP-R stable or rising); the
# values are examples, not a plan of any real place.
base_year: 2024
targets:
  - {{indicator: gep_yuan, measure: cum_pct, op: ">=", value: 3.0, label: "GEP +3 % over the base year at comparable prices"}}
  - {{indicator: gep_r_yuan, measure: yoy_pct, op: ">=", value: 0.0, label: "GEP-R stable or rising"}}
fall_flag_pct: -5.0
"""

ALLOCATION_RULE = """\
# GENERATED by {gen}: do not edit, rerun the generator.
# ILLUSTRATIVE allocation rule for the multi-year sample demo (gep allocate): an ecological compensation fund
# (given on the command line) shared among the townships by a weighted score of min-max normalised indicators,
# each township getting at least floor_yuan. Weights and floor are examples, not a policy. gdp_per_capita_yuan
# comes from development_statistics.csv (ILLUSTRATIVE [EX]).
indicators:
  - {{name: gep_r_per_km2, weight: 0.5, direction: higher_gets_more}}
  - {{name: gep_r_change, weight: 0.3, direction: higher_gets_more}}
  - {{name: gdp_per_capita_yuan, weight: 0.2, direction: lower_gets_more}}
normalise: minmax
floor_yuan: 1000000
"""

README = """\
# `pipelines/sample_years/` — three accounting years of the synthetic sample (provenance)

**GENERATED by `{gen}`** (rerun it after a change of `pipelines/sample.yaml` or of the tables it
reads; `tests/test_sample_years.py` fails on a stale copy). Everything here is **synthetic or
ILLUSTRATIVE [EX]**: the county is the invented sample of `sample_tiles/` (see
`sample_tiles/PROVENANCE.md`), and every change between the years is invented for a demo of the
multi-year account (`gep series`, `gep assess`, `gep allocate`). Nothing here is a statistic or an
observation; do not use it for real accounting.

```bash
.venv/bin/python pipelines/make_sample_years.py          # rewrites this folder and pipelines/tables/{cpi}
for y in 2024 2025 2026; do .venv/bin/gep run pipelines/sample_years/sample_$y.yaml; done   # out/sample_years/<year>
```

| file | content |
|---|---|
| `sample_<year>.yaml` | `pipelines/sample.yaml` with `name`, `description`, `accounting_year`, `prices.price_index`, the climate `scale` factors, `economic_accounts.table`, a `scenario` (2025, 2026) and `output.dir` changed; relative paths re-based one folder deeper |
| `statistics_<year>.csv` | `pipelines/tables/sample_statistics.csv` (ILLUSTRATIVE [EX]) with `year` set and `value_yuan` × the growth factor (integer yuan) |
| `development_statistics.csv` | per township (`town_code`, `town_name` of `sample_tiles/data/polygons/townships.gpkg`): `population`, `gdp_per_capita_yuan` per year 2024–2026: invented [EX] (GDP per capita +5 %/a; population +1 %/a in 城关镇, −0.5 %/a elsewhere) |
| `targets.yaml` | illustrative assessment targets: GEP ≥ +3 % cumulative over 2024 at comparable prices, GEP-R year on year ≥ 0, flag a fall below −5 % |
| `allocation_rule.yaml` | illustrative allocation rule: GEP-R per km² (0.5), GEP-R change (0.3), GDP per capita (0.2, lower gets more), min-max normalised, floor 1,000,000 yuan; the fund is a CLI argument |
| `../tables/{cpi}` | the CPI rows 2005–2024 of `pipelines/tables/cpi_china.csv`, copied verbatim (evidence V2/U as there), plus 2025 ({r25:+.1f} %) and 2026 ({r26:+.1f} %) rows marked ILLUSTRATIVE, evidence `EX` |

## What changes between the years (all ILLUSTRATIVE [EX])

| year | land cover (`scenario.edits`) | precipitation `scale` | ET `scale` | statistics | CPI rate |
|---|---|---|---|---|---|
{rows}

* **Restoration (2025, kept in 2026):** every shrub, dry-cropland and bare pixel (classes 5, 8, 12)
  whose centre lies in township {rt} (高山乡) — 796 + 744 + 47 = 1,587 px, 1.43 km², 3.9 % of
  the township — becomes evergreen broadleaf forest (class 1), with NEP {nep} t C/ha/a on them
  (`set_inputs`; the lower end of the sample's synthetic broadleaf NEP, as in
  `pipelines/sample_restoration.yaml`).
* **Development (2026):** in township {dt} (溪口镇), the development parcel of
  `pipelines/sample_development.yaml` (510 m × 600 m, 340 px, all forest) and a second phase
  abutting it on the west (900 m × 600 m, x 606300–607200, y 3120040–3120640; its 570 forest
  pixels only) become built-up (class 11), NEP 0: 910 px, 0.82 km².
* **Climate:** every monthly precipitation raster and the ET raster are multiplied by the year's
  `scale`; the sample has one climate, so the years differ only by these factors.
* **Prices:** every default price (price_year 2010) is moved to the accounting year by the CPI
  ratio index(year)/index(2010) (`prices.price_index`); GEP-R is therefore at current prices of
  each year, and a comparison at comparable prices must deflate by the same index.
* **Statistics (EPV, ECV):** nominal growth factors of the 2024 values, invented.

The factors were chosen so that the assessment of the demo is clear-cut (`targets.yaml`), as the
runs give (engine of this repository, sample data as committed): GEP at comparable (2024) prices
about +4.3 % over 2024 in 2025 (target met) and about +0.2 % in 2026 (not met); GEP-R rises in
every township in 2025 (高山乡 most, about +6 %) and falls in every township in 2026, 溪口镇 most
(about −5.8 %, −7 % at comparable prices; the others −2 % to −4 %). `tests/test_sample_years.py`
(marked slow) runs the three years and checks these directions.
"""


def outputs() -> dict[str, str]:
    """Relative path (from ``pipelines/``) -> text of every file the generator writes."""
    files = {f"tables/{CPI_NAME}": cpi_csv()}
    for year in sorted(YEARS):
        files[f"{FOLDER}/sample_{year}.yaml"] = year_yaml(year)
        files[f"{FOLDER}/statistics_{year}.csv"] = statistics_csv(year)
    files[f"{FOLDER}/development_statistics.csv"] = development_csv()
    files[f"{FOLDER}/targets.yaml"] = TARGETS.format(gen=GENERATOR)
    files[f"{FOLDER}/allocation_rule.yaml"] = ALLOCATION_RULE.format(gen=GENERATOR)
    rows = []
    for year in sorted(YEARS):
        s = YEARS[year]
        lc = ("restoration" if s["restoration"] else "—") + (" + development" if s["development"] else "")
        rate = CPI_EXTRA.get(year)
        rows.append(f"| {year} | {lc} | {s['precip_scale']:.2f} | {s['et_scale']:.2f} | × {s['growth']:.2f} | "
                    + (f"{rate - 100:+.1f} % [EX]" if rate else "+0.2 % (real row, V2)") + " |")
    files[f"{FOLDER}/README.md"] = README.format(gen=GENERATOR, cpi=CPI_NAME,
                                                 r25=CPI_EXTRA[2025] - 100, r26=CPI_EXTRA[2026] - 100,
                                                 rows="\n".join(rows), rt=RESTORED_TOWN, dt=DEVELOPED_TOWN,
                                                 nep=RESTORED_NEP)
    return files


def main(out: Path = PIPELINES) -> list[Path]:
    written = []
    for rel, text in outputs().items():
        p = Path(out) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode("utf-8"))
        written.append(p)
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PIPELINES,
                    help="folder standing for pipelines/ (default: pipelines/ of the repository)")
    args = ap.parse_args()
    for p in main(args.out):
        print(p)
