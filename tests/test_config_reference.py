"""Configuration reference generated from the config models (gep_raster.config_reference): the committed
docs/configuration.md is what the generator gives now, every key has a description, the JSON schema, the
commented template that load_config accepts once its FILL_IN values are filled, and the two CLI commands."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from gep_raster import config_reference as cr
from gep_raster.config import LayerConfig, RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pipelines" / "sample.yaml"


def test_committed_docs_equal_the_generator():
    doc = ROOT / "docs" / "configuration.md"
    assert doc.is_file(), "docs/configuration.md missing: python -m gep_raster.config_reference --markdown " \
                          "docs/configuration.md"
    assert doc.read_text(encoding="utf-8") == cr.reference_markdown(), (
        "docs/configuration.md is stale: run python -m gep_raster.config_reference --markdown docs/configuration.md")
    assert cr.main(["--check", str(doc)]) == 0


def test_check_reports_a_stale_file(tmp_path):
    stale = tmp_path / "c.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert cr.main(["--check", str(stale)]) == 1
    assert cr.main(["--markdown", str(stale)]) == 0 and cr.main(["--check", str(stale)]) == 0


def test_every_key_has_a_description_and_a_unique_path():
    keys = cr.reference_keys()
    assert len(keys) > 200
    assert [k.path for k in keys if not k.description.strip()] == []
    paths = [k.path for k in keys]
    assert len(paths) == len(set(paths))
    assert "source_path" not in paths and "config_dir" not in paths  # not YAML keys


def test_rows_carry_types_defaults_units_and_effective_defaults():
    rows = {k.path: k for k in cr.reference_keys()}
    assert rows["name"].required and rows["name"].default == "required"
    assert rows["reference"].type == "one of: land_cover, dem" and rows["reference"].default == "land_cover"
    assert rows["inputs.land_cover.band"].type == "integer (>= 1)" and rows["inputs.land_cover.band"].default == "1"
    assert rows["inputs.precipitation.path"].unit == "mm/a"
    assert rows["processing.memory_budget_mb"].unit == "MB" and rows["processing.memory_budget_mb"].default == "2048"
    assert rows["output.chunk_size"].type == "integer | null (>= 64, <= 16384)"
    assert rows["services.soil_retention.routing"].type == "one of: d8, mfd, d8_flood"
    assert rows["services.air_purification.pollutants"].type == "list of: so2, nox, dust"
    assert rows["services.air_purification.pollutants"].default == "[so2, nox, dust]"
    # the effective default of a service switch, not ServiceConfigBase's True
    assert rows["services.water_conservation.enabled"].default == "true"
    assert rows["services.flood_regulation.enabled"].default == "false"
    assert rows["layers.<name>.role"].type == "one of: admin, special_unit"
    assert rows["scenario.edits[].to_class"].type == "integer (>= 0, <= 65535)"
    assert rows["services.flood_regulation.storm_precip_mm"].unit == "mm"
    sections = {k.section for k in rows.values()}
    assert {"top level", "inputs", "services.soil_retention", "layers", "output", "processing"} <= sections


def test_markdown_has_one_table_per_section():
    md = cr.reference_markdown()
    for section in ("inputs", "legend", "prices", "services.water_conservation", "services.flood_regulation",
                    "layers", "output", "processing"):
        assert f"\n## `{section}`\n\n| key | type / allowed values | default | unit | meaning |" in md
    assert "| `inputs.dem` | mapping (keys below) \\| null | `null` | m |" in md
    assert "\\<output.dir>" in md  # escaped: would read as an HTML tag


def test_json_schema():
    schema = cr.config_json_schema()
    assert schema["$schema"].endswith("2020-12/schema") and schema["type"] == "object"
    assert set(schema["required"]) == {"name", "inputs", "legend", "output"}
    assert "source_path" not in schema["properties"] and "config_dir" not in schema["properties"]
    assert schema["properties"]["reference"]["enum"] == ["land_cover", "dem"]
    assert "gep_raster__services" not in json.dumps(schema)
    assert "services_soil_retention" in schema["$defs"]
    undocumented = [f"{d}.{p}" for d, model in [("(top)", schema), *schema["$defs"].items()]
                    for p, prop in model.get("properties", {}).items() if not prop.get("description")]
    assert undocumented == []
    assert schema["$defs"]["ProcessingConfig"]["properties"]["memory_budget_mb"]["unit"] == "MB"


_FILL = re.compile(r"(?m)^(\s*)(\w+): FILL_IN$")


def _fill_paths(template: str) -> list[str]:
    """Dotted paths of the uncommented FILL_IN values, in document order."""
    out = []

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif v == cr.FILL_IN:
                out.append(f"{prefix}{k}")
    walk(yaml.safe_load(template), "")
    return out


def test_template_filled_with_the_sample_files_loads(tmp_path):
    text = cr.template_yaml()
    paths = _fill_paths(text)
    assert paths == ["name", "inputs.land_cover.path", "inputs.dem.path", "inputs.precipitation.monthly",
                     "inputs.et.path", "legend.path", "output.dir"]
    assert len(_FILL.findall(text)) == len(paths)
    sample = load_config(SAMPLE)
    data = ROOT / "sample_tiles" / "data"
    fill = {"name": "from_template",
            "inputs.land_cover.path": str(data / "land_cover"),
            "inputs.dem.path": str(data / "dem" / "*.tif"),
            "inputs.precipitation.monthly": str(data / "climate" / "precip_monthly_*.tif"),
            "inputs.et.path": str(data / "climate" / "et_annual.tif"),
            "legend.path": str(sample.resolve(sample.legend.path)),
            "output.dir": str(tmp_path / "out")}
    values = iter(fill[p] for p in paths)
    filled = _FILL.sub(lambda m: f"{m.group(1)}{m.group(2)}: '{next(values)}'", text)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(filled, encoding="utf-8")
    cfg = load_config(cfg_path)
    assert cfg.name == "from_template" and cfg.inputs.precipitation.monthly.endswith("precip_monthly_*.tif")
    assert cfg.services.enabled() == ["water_conservation", "soil_retention", "carbon_sequestration",
                                      "air_purification"]
    # the commented defaults are the defaults
    assert cfg.model_dump(exclude={"name", "inputs", "legend", "output"}) == RunConfig.model_validate(
        {"name": "x", "inputs": {"land_cover": {"path": "a"}, "precipitation": {"monthly": "m"}, "et": {"path": "e"},
                                 "dem": {"path": "d"}},
         "legend": {"path": "l"}, "output": {"dir": "o"}}).model_dump(exclude={"name", "inputs", "legend", "output"})
    assert len(cfg.inputs.land_cover.path) > 0 and cfg.resolve_many(cfg.inputs.dem.path, "inputs.dem.path")


def test_template_lists_every_key_and_uncommented_blocks_parse():
    text = cr.template_yaml()
    for k in cr.reference_keys():
        assert re.search(rf"(?m)^[\s#]*(- )?{re.escape(k.path.rsplit('.', 1)[-1].removesuffix('[]'))}:", text), k.path
    # a commented section, uncommented, is valid YAML of the right shape
    lines = text.splitlines()
    start = lines.index("# layers:")
    block = []
    for ln in lines[start:]:
        if not ln.startswith("#") or (block and not ln.startswith("#  ")):
            break
        block.append(ln[2:])
    layer = yaml.safe_load("\n".join(block))["layers"]["<name>"]
    assert set(layer) == set(LayerConfig.model_fields)


def _app():
    app = typer.Typer()
    cr.register(app)
    return app


def test_cli_config_schema(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["config-schema"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["title"] == "gep_raster run configuration"
    out = tmp_path / "schema.json"
    res = runner.invoke(_app(), ["config-schema", "-o", str(out)])
    assert res.exit_code == 0 and json.loads(out.read_text(encoding="utf-8")) == cr.config_json_schema()


def test_cli_init_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    target = tmp_path / "new" / "run.yaml"
    res = runner.invoke(_app(), ["init", str(target)])
    assert res.exit_code == 0, res.output
    assert target.read_text(encoding="utf-8") == cr.template_yaml()
    target.write_text("mine\n", encoding="utf-8")
    res = runner.invoke(_app(), ["init", str(target)])
    assert res.exit_code == 2
    assert "already exists" in res.output and "--force" in res.output
    assert target.read_text(encoding="utf-8") == "mine\n"
    res = runner.invoke(_app(), ["init", str(target), "--force"])
    assert res.exit_code == 0 and target.read_text(encoding="utf-8") == cr.template_yaml()


def test_write_template_raises_on_existing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError, match="--force"):
        cr.write_template(p)
    assert cr.write_template(p, force=True) == p


def test_yaml_value():
    assert cr.yaml_value(None) == "null" and cr.yaml_value(True) == "true" and cr.yaml_value("") == "''"
    assert cr.yaml_value(["water", "urban"]) == "[water, urban]" and cr.yaml_value({}) == "{}"
    assert cr.yaml_value(1.0) == "1.0" and cr.yaml_value("land_cover") == "land_cover"
