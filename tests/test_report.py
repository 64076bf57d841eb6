"""The accounting report (``gep report``, gep_raster.report): numbers equal to the run's manifest and tables, both
languages, no external URL, a real browser shows the maps and tables, the PDF, the change section."""
from __future__ import annotations

import json
import re
import string
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from conftest import REPO, chromium_executable
from gep_raster.report import labels as L
from gep_raster.report import pdf as report_pdf

SCREENSHOT = REPO / "docs" / "img" / "report.png"


# ---------------------------------------------------------------------------------------------------------------
# the HTML, parsed with the standard library
# ---------------------------------------------------------------------------------------------------------------
class Cells(HTMLParser):
    """Every <td>/<th> with its attributes, its row's and its table's attributes, and its text; every src/href."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cells, self.links, self.tables, self.imgs = [], [], [], []
        self._table, self._tr, self._cell = [], {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if k in a:
                self.links.append((tag, k, a[k]))
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self._table.append(a)
            self.tables.append(a)
        elif tag == "tr":
            self._tr = a
        elif tag in ("td", "th"):
            self._cell = {"tag": tag, "attrs": a, "tr": self._tr, "table": self._table[-1] if self._table else {},
                          "text": ""}

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def where(self, table_id=None, **attrs):
        """Cells of table ``table_id`` whose attributes match: ``data_col=...`` is the cell's ``data-col``,
        ``tr_key=...`` its row's ``data-key``."""
        out = []
        for c in self.cells:
            if table_id is not None and c["table"].get("id") != table_id:
                continue
            ok = True
            for k, v in attrs.items():
                if k.startswith("tr_"):
                    ok &= c["tr"].get("data-" + k[3:].replace("_", "-")) == v
                else:
                    ok &= c["attrs"].get(k.replace("_", "-")) == v
            if ok:
                out.append(c)
        return out


def parse(path: Path) -> Cells:
    p = Cells()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p


def value(cell) -> float:
    return float(cell["attrs"]["data-value"])


# ---------------------------------------------------------------------------------------------------------------
# fast tests: labels, formats, population and GDP from statistics, no browser
# ---------------------------------------------------------------------------------------------------------------
def test_label_tables_have_the_same_keys_and_fields():
    en, zh = L.LABELS["en"], L.LABELS["zh"]
    assert en.keys() == zh.keys()
    for k in en:
        fields = {f for _, f, _, _ in string.Formatter().parse(en[k]) if f}
        assert fields == {f for _, f, _, _ in string.Formatter().parse(zh[k]) if f}, k
    assert "生态系统生产总值" in zh["title"] and "调节服务" in zh["gep_r"]
    assert all(len(v) == 2 for v in (*L.SERVICE_NAMES.values(), *L.ECOSYSTEM_NAMES.values(), *L.TERM_NAMES.values()))


@pytest.mark.parametrize("unit, lang, text", [
    ("m3/a per pixel", "en", "m³/a"), ("yuan/a", "zh", "元/年"), ("t CO2/a", "zh", "t CO₂/年"),
    ("yuan/km2/a", "en", "yuan/km²/a"), ("t/ha/a", "zh", "t/ha/年"), ("yuan/t O2", "en", "yuan/t O₂"),
])
def test_unit_text(unit, lang, text):
    assert L.unit_text(unit, lang) == text


def test_term_names():
    assert L.term_name("air_purification_so2_t", "air_purification", "en") == "Air purification: SO2"
    assert L.term_name("water_conservation_m3", "water_conservation", "zh") == "水源涵养"
    with pytest.raises(ValueError):
        L.labels("fr")


def test_number_formats():
    from gep_raster import report as R

    assert R._fmt(7201262278.735232) == "7,201,262,279" and R._fmt(10.282145) == "10.28"
    assert R._fmt(0.0037) == "0.0037" and R._fmt(None) == "–" and R._fmt(float("nan")) == "–"
    assert R._raw(7201262278.735232) == "7201262278.735232" and R._raw(None) == "" and R._raw(12) == "12"


def test_population_and_gdp_from_the_statistics_table(tmp_path):
    from gep_raster.report.context import population_gdp

    csv = tmp_path / "stats.csv"
    csv.write_text("unit_id,account,item,value_yuan,year,population,gdp_yuan\n"
                   "1,provisioning,agriculture,10,2024,1000,5e6\n1,cultural,tourism,5,2024,1000,5e6\n"
                   "2,provisioning,agriculture,10,2024,500,2e6\n2,provisioning,agriculture,10,2023,9999,9e9\n",
                   encoding="utf-8")
    run = SimpleNamespace(path=tmp_path, manifest={"accounting_year": 2024,
                                                   "economic_accounts": {"table": {"abs_path": str(csv)}}})
    got = population_gdp(run)
    assert got["population"] == 1500 and got["gdp"] == 7e6  # one value per unit, rows of 2024 only
    assert "column population, 2 unit(s)" in got["population_source"]
    opt = population_gdp(run, population=10.0)
    assert opt["population"] == 10.0 and opt["population_source"] == "option --population" and opt["gdp"] == 7e6
    bare = population_gdp(SimpleNamespace(path=tmp_path, manifest={}))
    assert bare["population"] is None and bare["gdp"] is None
    from gep_raster.errors import ConfigError

    with pytest.raises(ConfigError):
        population_gdp(run, gdp=-1.0)


def test_no_browser_means_no_pdf_and_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(report_pdf, "find_chromium", lambda: None)
    (tmp_path / "r.html").write_text("<html><body>x</body></html>", encoding="utf-8")
    info = report_pdf.print_pdf(tmp_path / "r.html", tmp_path / "r.pdf")
    assert info["written"] is False and "no Chromium" in info["reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_a_failing_browser_leaves_no_partial_pdf(tmp_path, monkeypatch):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(report_pdf, "find_chromium", lambda: str(fake))
    (tmp_path / "r.html").write_text("<html></html>", encoding="utf-8")
    info = report_pdf.print_pdf(tmp_path / "r.html", tmp_path / "out" / "r.pdf")
    assert info["written"] is False and "status 3" in info["reason"] and "broken" in info["reason"]
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# the sample run and its reports (slow: a run of the sample, and a report draws 14 figures)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_result(tmp_path_factory):
    """The sample run (its own report written by the run, output.report default html+pdf) and the sha256 of that
    report's HTML taken right after the run (later fixtures write the folder again)."""
    import gep_raster
    from gep_raster.outputs.io_write import sha256_file

    out = tmp_path_factory.mktemp("report") / "sample"
    res = gep_raster.run(REPO / "pipelines" / "sample.yaml", output_dir=out)
    html = out / "report" / "report_en.html"
    return res, (sha256_file(html) if html.is_file() else None)


@pytest.fixture(scope="module")
def sample_run(sample_result):
    return sample_result[0].output_dir


def test_gep_run_writes_the_report_by_default(sample_result):
    res, sha = sample_result
    assert res.manifest["config"]["output"]["report"] == "html+pdf"
    assert res.report is not None and res.report["lang"] == "en"
    assert res.report["html"]["path"] == "report_en.html" and res.report["html"]["sha256"] == sha
    assert res.report["run"]["run_hash"] == res.manifest["run_hash"]
    assert res.report["pdf"]["written"] == (res.output_dir / "report" / "report_en.pdf").is_file()


def test_report_stage_keeps_an_up_to_date_report(sample_result, tmp_path, caplog):
    """A rerun of an identical run keeps the report already there (same run hash, files as recorded); a report
    whose HTML was changed, or another run hash, is written again."""
    import shutil

    from gep_raster.config import load_config
    from gep_raster.outputs.io_write import sha256_file
    from gep_raster.pipeline.report import report

    res, _ = sample_result
    run = tmp_path / "run"
    shutil.copytree(res.output_dir, run, ignore=shutil.ignore_patterns(".gep_state"))
    cfg = load_config(REPO / "pipelines" / "sample.yaml", overrides={"output": {"dir": str(run), "report": "html"}})
    html = run / "report" / "report_en.html"
    before = (html.stat().st_mtime_ns, sha256_file(html))
    with caplog.at_level("INFO", logger="gep_raster"):
        kept = report(cfg, res.manifest["run_hash"])
    assert "up to date; kept" in caplog.text and kept["html"]["sha256"] == before[1]
    assert (html.stat().st_mtime_ns, sha256_file(html)) == before
    html.write_text("changed", encoding="utf-8")
    caplog.clear()
    with caplog.at_level("INFO", logger="gep_raster"):
        again = report(cfg, res.manifest["run_hash"])
    assert "up to date" not in caplog.text and "report: report_en.html written" in caplog.text
    assert again["html"]["sha256"] == sha256_file(html) and html.stat().st_size > 100_000
    # another run hash: written again as well
    caplog.clear()
    with caplog.at_level("INFO", logger="gep_raster"):
        report(cfg, "0" * 64)
    assert "up to date" not in caplog.text


def test_report_stage_off_and_failure_keep_the_run(tmp_path, caplog):
    from gep_raster.config import load_config
    from gep_raster.pipeline.report import report

    off = load_config(REPO / "pipelines" / "sample.yaml", overrides={"output": {"dir": str(tmp_path / "a"),
                                                                                 "report": "off"}})
    assert report(off) is None and not (tmp_path / "a" / "report").exists()
    # a folder without a finished run: the report fails, the stage warns (naming the command) and returns None
    bad = load_config(REPO / "pipelines" / "sample.yaml", overrides={"output": {"dir": str(tmp_path / "b"),
                                                                                 "report": "html"}})
    (tmp_path / "b").mkdir()
    with caplog.at_level("WARNING", logger="gep_raster"):
        assert report(bad) is None
    assert "report: not written" in caplog.text and f"gep report {tmp_path / 'b'}" in caplog.text
    assert not (tmp_path / "b" / "report" / "report_en.html").exists()


@pytest.fixture(scope="module")
def en_report(sample_run):
    from gep_raster.report import write_report

    return sample_run / "report", write_report(sample_run, lang="en")


@pytest.fixture(scope="module")
def zh_report(sample_run, tmp_path_factory):
    """The Chinese report through the command line: --no-pdf, population and GDP given, another folder."""
    from gep_raster.report import register

    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command, so that typer keeps "report" as a subcommand name
    def _noop():
        pass

    out = tmp_path_factory.mktemp("zh")
    res = CliRunner().invoke(app, ["report", str(sample_run), "-o", str(out), "--lang", "zh", "--no-pdf",
                                   "--population", "250000", "--gdp", "2.5e10", "-q"])
    assert res.exit_code == 0, res.output
    assert "report (zh) of run sample written to" in res.output
    return out, json.loads((out / "report_manifest.json").read_text(encoding="utf-8"))


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_summary_equals_the_manifest_totals(sample_run, en_report):
    folder, _ = en_report
    cells = parse(folder / "report_en.html")
    totals = _manifest(sample_run)["totals"]
    for key in ("gep_r_yuan", "gep_yuan", "provisioning_yuan", "cultural_yuan"):
        (cell,) = cells.where("summary", data_col=key)
        assert value(cell) == totals[key]["sum"], key
    area_km2 = value(cells.where("summary", data_col="area_km2")[0])
    assert area_km2 == pytest.approx(_manifest(sample_run)["diagnostics"]["plausibility"]["stats"]["area_ha"] / 100)
    per_km2 = value(cells.where("summary", data_col="gep_r_per_km2")[0])
    assert per_km2 == pytest.approx(totals["gep_r_yuan"]["sum"] / area_km2, rel=1e-12)
    assert not cells.where("summary", data_col="gep_per_capita")  # no population given


@pytest.mark.slow
def test_physical_quantity_times_unit_price_is_the_value(sample_run, en_report):
    folder, _ = en_report
    m = _manifest(sample_run)
    cells = parse(folder / "report_en.html")
    rows = {}
    for c in cells.where("services"):
        if "data-service" in c["tr"]:
            rows[(c["tr"]["data-service"], c["tr"].get("data-term"))] = c["tr"]
    singles = [k for k, tr in rows.items() if tr.get("data-terms") == "1" and k[1] is not None]
    assert {s for s, _ in singles} >= {"water_conservation", "soil_retention", "carbon_sequestration",
                                       "climate_regulation", "flood_regulation", "oxygen_release"}
    for (service, term) in singles:
        tr = rows[(service, term)]
        phys, price, val = float(tr["data-physical"]), float(tr["data-unit-price"]), float(tr["data-value"])
        assert phys == m["totals"][term]["sum"] and val == m["totals"][f"{service}_yuan"]["sum"]
        assert price == m["valuation"][service][0]["unit_value_yuan"]
        assert phys * price == pytest.approx(val, rel=1e-9), service
    for service in ("air_purification", "water_purification"):  # multi-price: sum of the terms
        terms = [tr for (s, t), tr in rows.items() if s == service and t is not None]
        assert len(terms) == 3
        total = sum(float(tr["data-physical"]) * float(tr["data-unit-price"]) for tr in terms)
        (tot_row,) = [tr for (s, t), tr in rows.items() if s == service and t is None]
        assert float(tot_row["data-value"]) == m["totals"][f"{service}_yuan"]["sum"]
        assert total == pytest.approx(float(tot_row["data-value"]), rel=1e-6)
    price_rows = {c["tr"]["data-price"] for c in cells.where("prices") if "data-price" in c["tr"]}
    assert "soil_retention.dredging_cost" in price_rows and "air_purification.so2_price" in price_rows


@pytest.mark.slow
def test_layer_tables_equal_the_csv_tables(sample_run, en_report):
    folder, _ = en_report
    cells = parse(folder / "report_en.html")
    m = _manifest(sample_run)
    for layer, lc in m["config"]["layers"].items():
        t = pd.read_csv(sample_run / "tables" / f"{layer}.csv", dtype={lc["id_field"]: str}, encoding="utf-8-sig")
        got = [c for c in cells.cells if c["table"].get("data-layer") == layer and "data-value" in c["attrs"]
               and c["table"].get("class", "").startswith("wide layer-table")]
        assert len(got) > len(t)
        by_id = t.set_index(lc["id_field"])
        for c in got:
            want = by_id.loc[c["tr"]["data-id"], c["attrs"]["data-col"]]
            assert value(c) == pytest.approx(float(want), rel=1e-15, abs=0), (layer, c["attrs"]["data-col"])
        cols = {c["attrs"]["data-col"] for c in got}
        assert {"gep_r_yuan", "water_conservation_yuan", "water_conservation_m3", "area_km2", "gep_yuan"} <= cols


@pytest.mark.slow
def test_ecosystem_matrix_adds_up_to_the_totals(sample_run, en_report):
    folder, rm = en_report
    cells = parse(folder / "report_en.html")
    totals = _manifest(sample_run)["totals"]
    assert rm["matrix"]["available"] and rm["matrix"]["max_rel_diff"] < 1e-9
    for key in ("gep_r_yuan", "water_conservation_yuan", "gep_yuan"):
        row = cells.where("matrix", tr_key=key)
        (total,) = [c for c in row if c["attrs"].get("data-col") == "total"]
        parts = [value(c) for c in row if "data-value" in c["attrs"] and c["attrs"].get("data-col") != "total"]
        assert value(total) == pytest.approx(totals[key]["sum"], rel=1e-9)
        assert sum(parts) == pytest.approx(value(total), rel=1e-12)
    forest = [c for c in cells.where("matrix", tr_key="gep_r_yuan") if c["attrs"].get("data-col") == "forest"]
    assert value(forest[0]) > 0.5 * totals["gep_r_yuan"]["sum"]  # the sample is mostly forest


@pytest.mark.slow
def test_both_languages_render(en_report, zh_report):
    folder, _ = en_report
    en = (folder / "report_en.html").read_text(encoding="utf-8")
    zfolder, zm = zh_report
    zh = (zfolder / "report_zh.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in en and "Gross Ecosystem Product" in en and "调节服务" not in en.split("<pre")[0]
    assert '<html lang="zh-CN">' in zh and "生态系统生产总值" in zh and "调节服务" in zh and "水源涵养" in zh
    assert zm["lang"] == "zh" and zm["pdf"]["written"] is False and "--no-pdf" in zm["pdf"]["reason"]
    assert not (zfolder / "report_zh.pdf").exists()


@pytest.mark.slow
def test_population_and_gdp_options(sample_run, zh_report):
    zfolder, zm = zh_report
    cells = parse(zfolder / "report_zh.html")
    gep = _manifest(sample_run)["totals"]["gep_yuan"]["sum"]
    assert value(cells.where("summary", data_col="gep_per_capita")[0]) == pytest.approx(gep / 250000, rel=1e-12)
    assert value(cells.where("summary", data_col="gep_gdp")[0]) == pytest.approx(gep / 2.5e10, rel=1e-12)
    assert zm["population"] == {"value": 250000.0, "source": "option --population"}


@pytest.mark.slow
def test_no_external_url_in_the_html(en_report, zh_report):
    for path in (en_report[0] / "report_en.html", zh_report[0] / "report_zh.html"):
        text = path.read_text(encoding="utf-8")
        cells = parse(path)
        assert cells.links, "the report has images and internal links"
        for tag, attr, v in cells.links:
            assert not re.match(r"\s*(https?:)?//", v, re.I), (tag, attr, v[:80])
            assert v.startswith("#") if attr == "href" else v.startswith("data:image/"), (tag, attr, v[:40])
        assert not re.search(r"<(link|script|iframe|object|embed)\b", text, re.I)
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I) and "@import" not in text
        assert len(cells.imgs) >= 10  # GEP-R, GEP, 8 services, EPV, ECV, the chart


@pytest.mark.slow
def test_report_manifest_records_the_files(sample_run, en_report):
    from gep_raster.outputs.io_write import sha256_file

    folder, rm = en_report
    on_disk = json.loads((folder / "report_manifest.json").read_text(encoding="utf-8"))
    assert on_disk["run"]["run_hash"] == _manifest(sample_run)["run_hash"] == rm["run"]["run_hash"]
    assert on_disk["lang"] == "en" and on_disk["html"]["path"] == "report_en.html"
    assert on_disk["html"]["sha256"] == sha256_file(folder / "report_en.html")
    assert "en" in on_disk["by_lang"]
    assert rm["matrix"]["notes"][0].startswith("4 land-cover file(s): sha256 equal")


@pytest.mark.slow
def test_pdf_is_printed_when_chromium_is_there(en_report):
    folder, rm = en_report
    if chromium_executable() is None or report_pdf.find_chromium() is None:
        assert rm["pdf"]["written"] is False and rm["pdf"]["reason"]
        pytest.skip("no Chromium: the report manifest records why there is no PDF")
    pdf = folder / "report_en.pdf"
    assert rm["pdf"]["written"] is True, rm["pdf"]
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 100_000
    from gep_raster.outputs.io_write import sha256_file

    assert rm["pdf"]["sha256"] == sha256_file(pdf)


@pytest.mark.slow
def test_the_browser_shows_maps_and_tables(en_report, page):
    folder, _ = en_report
    page.goto((folder / "report_en.html").resolve().as_uri())
    page.wait_for_load_state("load")
    widths = page.eval_on_selector_all("figure.map img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert len(widths) >= 10 and min(widths) > 0, widths
    for sel in ("table#summary", "table#services", "table#matrix", "table.layer-table", "table#provenance"):
        assert page.locator(sel).first.is_visible(), sel
    assert page.locator("table#summary tr[data-key='gep_r_yuan']").is_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))  # the first screen: title, contents, summary
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and SCREENSHOT.stat().st_size < 400_000


@pytest.mark.slow
def test_compare_shows_the_change_section(sample_run, en_report, tmp_path):
    import gep_raster
    from gep_raster.analysis.change import compare_runs
    from gep_raster.report import write_report

    dev = tmp_path / "dev"
    gep_raster.run(REPO / "pipelines" / "sample_development.yaml", output_dir=dev)
    change = compare_runs(sample_run, dev, tmp_path / "change", include_physical=False)
    rm = write_report(dev, tmp_path / "rep", lang="en", compare=tmp_path / "change", pdf=False)
    assert rm["compare"]["role"] == "b"
    path = tmp_path / "rep" / "report_en.html"
    text = path.read_text(encoding="utf-8")
    assert 'id="change"' in text and "This report&#39;s run is run b." in text
    cells = parse(path)
    (delta,) = [c for c in cells.where("change-totals", tr_key="gep_r_yuan") if c["attrs"].get("data-col") == "delta"]
    assert value(delta) == change["totals"]["gep_r_yuan"]["delta"] < 0  # forest became built-up
    town = pd.read_csv(tmp_path / "change" / "tables" / "township_change.csv", dtype={"town_code": str},
                       encoding="utf-8-sig").set_index("town_code")
    got = [c for c in cells.cells if c["table"].get("data-layer") == "township"
           and "change-table" in c["table"].get("class", "") and c["attrs"].get("data-col") == "gep_r_yuan_delta"]
    assert len(got) == len(town)
    for c in got:
        assert value(c) == pytest.approx(town.loc[c["tr"]["data-id"], "gep_r_yuan_delta"], rel=1e-15, abs=0)
    assert 'id="map-delta_gep_r"' in text
    # the matrix of a scenario run reads its edited land cover: more urban area than the sample's
    assert rm["matrix"]["available"]
    urban = lambda p: value([c for c in parse(p).where("matrix", tr_key="area_km2")  # noqa: E731
                             if c["attrs"].get("data-col") == "urban"][0])
    assert urban(path) == pytest.approx(urban(sample_run / "report" / "report_en.html") + 0.306, abs=1e-6)


@pytest.mark.slow
def test_bad_options_exit_with_usage_errors(sample_run):
    from gep_raster.report import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop():
        pass

    r = CliRunner()
    res = r.invoke(app, ["report", str(sample_run), "--lang", "fr", "--no-pdf"])
    assert res.exit_code == 2 and "--lang must be one of en, zh" in res.output
    res = r.invoke(app, ["report", str(sample_run), "--population", "-5", "--no-pdf"])
    assert res.exit_code == 2 and "--population must be a positive number" in res.output
    res = r.invoke(app, ["report", str(sample_run.parent), "--no-pdf"])
    assert res.exit_code == 1 and "manifest.json" in res.output


@pytest.mark.slow
def test_matrix_refuses_a_changed_or_missing_land_cover(sample_run):
    import copy

    from gep_raster.analysis.change import load_run
    from gep_raster.report.context import matrix_section
    from gep_raster.report.matrix import MatrixUnavailable, ecosystem_matrix

    run = load_run(sample_run)
    changed = copy.deepcopy(run)
    for rec in changed.manifest["input_checksums"].values():
        if "land_cover" in rec["path"]:
            rec["sha256"] = "0" * 64
    with pytest.raises(MatrixUnavailable, match="differs from the run's"):
        ecosystem_matrix(changed)
    gone = copy.deepcopy(run)
    gone.manifest["config"]["inputs"]["land_cover"]["path"] = "no_such_folder/"
    sec = matrix_section(gone, "en")
    assert sec["available"] is False and "cannot be read again" in sec["reason"] and sec["legend"]
