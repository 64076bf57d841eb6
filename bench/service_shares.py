"""Per-service summary of a finished run: value and share of GEP-R, and the soil and water magnitudes.

``python bench/service_shares.py OUT_DIR [--k 0.03]`` reads OUT_DIR/tables/county.csv and the rasters of the run
and prints a Markdown table: per service the total value (yuan/a) and its share of GEP-R; mean potential erosion
R*K*LS (t/ha/a over the pixels where soil retention is computed; from the potential_erosion raster, or from the
r_factor and ls_factor rasters times ``--k`` for runs of versions without it), retained soil (t/ha/a), and
the pixels where water conservation + flood regulation exceed the P - ET surplus.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio


def _read(p: Path):
    with rasterio.open(p) as ds:
        return ds.read(1).astype(np.float64), abs(ds.transform.a * ds.transform.e)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--k", type=float, default=0.03, help="K of runs without a potential_erosion raster")
    a = ap.parse_args(argv)
    out = Path(a.out_dir)
    t = pd.read_csv(out / "tables" / "county.csv").iloc[0]
    m = json.loads((out / "manifest.json").read_text())
    services = list(m["methods"])
    gep_r = t["gep_r_yuan"]
    print("| service | value (yuan/a) | share of GEP-R |\n|---|---|---|")
    for s in services:
        print(f"| {s} | {t[f'{s}_yuan']:,.0f} | {t[f'{s}_yuan'] / gep_r:.1%} |")
    print(f"| GEP-R | {gep_r:,.0f} | valid area {t['valid_area_km2']:.2f} km2, "
          f"{gep_r / t['valid_area_km2']:,.0f} yuan/km2/a |")
    inter, phys = out / "rasters" / "intermediate", out / "rasters" / "physical"
    q, px = _read(phys / "soil_retention_t.tif")
    ha = px / 1e4
    on = np.isfinite(q) & (q > 0)
    if (inter / "potential_erosion.tif").exists():
        pot, _ = _read(inter / "potential_erosion.tif")
        src = "potential_erosion raster"
    else:
        pot = _read(inter / "r_factor.tif")[0] * a.k * _read(inter / "ls_factor.tif")[0]
        src = f"r_factor x {a.k} x ls_factor"
    r, _ = _read(inter / "r_factor.tif")
    print(f"\nsoil: mean R {np.nanmean(r[on]):,.0f} MJ mm/(ha h a); mean potential erosion {np.nanmean(pot[on]):,.0f} "
          f"t/ha/a ({src}); retained {np.nansum(q[on]) / (on.sum() * ha):,.0f} t/ha/a over {on.sum():,} px")
    if (phys / "flood_regulation_m3.tif").exists() or (phys / "water_conservation_m3.tif").exists():
        P, _ = _read(inter / "precipitation_mm.tif")
        ET, _ = _read(inter / "et_mm.tif")
        avail = np.maximum(P - ET, 0) * px / 1000
        wc = _read(phys / "water_conservation_m3.tif")[0] if (phys / "water_conservation_m3.tif").exists() else 0
        fl = _read(phys / "flood_regulation_m3.tif")[0] if (phys / "flood_regulation_m3.tif").exists() else 0
        tot = np.nan_to_num(wc) + np.nan_to_num(fl)
        valid = np.isfinite(P) & np.isfinite(ET)
        over = valid & (tot > avail * (1 + 1e-5) + 1e-6)
        print(f"water: conservation + flood = {tot[valid].sum() / avail[valid].sum():.2f} x the P-ET surplus in "
              f"total; above it on {over.sum():,} of {valid.sum():,} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
