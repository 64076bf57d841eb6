"""Configuration reference generated from the config models: JSON schema, Markdown tables, YAML template.

Everything here is read from the pydantic models of :mod:`gep_raster.config` (and the ``Config`` of each
service): key names, types, allowed values (``Literal`` types and constraints), defaults (the effective
ones: ``services.flood_regulation.enabled`` is false although a service's ``enabled`` defaults to true),
the unit (``json_schema_extra={"unit": ...}`` of a field) and the meaning (the field's ``description``).

* :func:`config_json_schema`: the JSON schema of the run configuration (``gep config-schema``);
* :func:`reference_keys` / :func:`reference_markdown`: one row per key (dotted path; ``<name>`` stands for
  a mapping key chosen by the user, ``[]`` for an item of a list), one Markdown table per section
  (``docs/configuration.md``, written by ``python -m gep_raster.config_reference --markdown FILE``);
* :func:`template_yaml` / :func:`write_template`: a commented YAML template (``gep init``) that
  :func:`gep_raster.config.load_config` accepts once every ``FILL_IN`` value is replaced by a real path;
* :func:`register`: adds the two commands to the typer app of :mod:`gep_raster.cli`.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .config import RunConfig

#: value written for the keys the user must fill in (``gep init``)
FILL_IN = "FILL_IN"

#: keys optional in the schema that the services enabled by default need (water conservation: precipitation and
#: ET; soil retention: the DEM and 12 monthly precipitation rasters): the template writes them as ``FILL_IN``
TEMPLATE_NEEDED = ("inputs.dem.path", "inputs.precipitation.monthly", "inputs.et.path", "legend.path")

#: keys written uncommented with their default in the template (the services' on/off switches)
TEMPLATE_SET = ("services.*.enabled",)

#: Markdown file the repository keeps generated (see tests/test_config_reference.py)
DOCS_FILE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

_CONSTRAINTS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
                (annotated_types.Lt, "lt", "<"), (annotated_types.MinLen, "min_length", "at least"))


@dataclass(frozen=True)
class ConfigKey:
    """One key of the run configuration.

    ``path`` is dotted (``inputs.dem.path``; ``layers.<name>.path``; ``legend.join[].path``), ``section`` the
    table it belongs to (``top level``, ``inputs``, ``services.soil_retention`` ...), ``type`` the type and
    allowed values in words, ``default`` the effective default as YAML (``required`` when the key must be given
    within its section), ``unit`` the physical unit (empty when none), ``description`` the meaning."""

    path: str
    section: str
    type: str
    default: str
    unit: str
    description: str
    required: bool


# -- types ---------------------------------------------------------------------------------------------------------

def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip_none(tp) -> tuple[Any, bool]:
    """``(annotation without None, nullable)``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        nullable = len(args) < len(get_args(tp))
        return (args[0] if len(args) == 1 else Union[tuple(args)]), nullable
    return tp, False


def _nested(tp) -> tuple[str, type[BaseModel] | None]:
    """How a field nests: ``("model", M)``, ``("dict", M)`` (mapping name -> M), ``("list", M)`` or ``("scalar",
    None)``."""
    tp, _ = _strip_none(tp)
    if _is_model(tp):
        return "model", tp
    args = get_args(tp)
    if get_origin(tp) is dict and len(args) == 2 and _is_model(args[1]):
        return "dict", args[1]
    if get_origin(tp) is list and args and _is_model(args[0]):
        return "list", args[0]
    return "scalar", None


def _type_words(tp) -> str:
    """An annotation in words: ``one of: a, b``, ``list of: a, b``, ``int | null``, ``mapping str -> float``."""
    tp, nullable = _strip_none(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        text = "one of: " + ", ".join(str(a) for a in args)
    elif origin in (Union, types.UnionType):
        text = " | ".join(_type_words(a) for a in args)
    elif origin is list:
        inner = _type_words(args[0]) if args else "any"
        text = "list of: " + inner.removeprefix("one of: ") if inner.startswith("one of: ") else f"list of {inner}"
    elif origin is dict:
        text = f"mapping {_type_words(args[0])} -> {_type_words(args[1])}"
    elif _is_model(tp) and tp.__name__ == "StacPath":
        text = "STAC query {stac: ...} (section `stac` below)"
    elif _is_model(tp):
        text = "mapping (keys below)"
    elif isinstance(tp, type):
        text = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    else:
        text = str(tp)
    return text + (" | null" if nullable else "")


def _field_type(field: FieldInfo) -> str:
    text = _type_words(field.annotation)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "enum" in extra:
        text = "one of: " + ", ".join(str(v) for v in extra["enum"])
    bounds = [f"{sym} {getattr(m, attr)}" for m in field.metadata for cls, attr, sym in _CONSTRAINTS
              if isinstance(m, cls)]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _unit(field: FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("unit", ""))


def yaml_value(value) -> str:
    """``value`` as a one-line YAML flow value (``null``, ``true``, ``[forest, shrub]``, ``{}``, ``''``).

    Parameters
    ----------
    value : object
        A default of a config field: None, bool, number, string, list, dict or pydantic model.

    Returns
    -------
    str
        The YAML text (a model is written as the mapping of its values).
    """
    import yaml

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip().removesuffix(
        "\n...").removesuffix("...").strip()


def _yaml_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The YAML keys of ``model`` (fields excluded from serialisation, e.g. ``RunConfig.source_path``, are not)."""
    return {n: f for n, f in model.model_fields.items() if not f.exclude}


def _default_of(field: FieldInfo, parent_default, name: str):
    """Effective default of a field: the value in the parent's default instance when there is one."""
    if isinstance(parent_default, BaseModel):
        return getattr(parent_default, name)
    return field.get_default(call_default_factory=True)


# -- reference rows ------------------------------------------------------------------------------------------------

def _section_of(path: str) -> str:
    parts = path.split(".")
    if len(parts) == 1:
        return "top level"
    if parts[0] == "services":
        return ".".join(parts[:2])
    return parts[0]


def _walk(model: type[BaseModel], prefix: str, instance) -> list[ConfigKey]:
    rows: list[ConfigKey] = []
    for name, field in _yaml_fields(model).items():
        path = f"{prefix}{name}"
        required = field.is_required()
        default = None if required else _default_of(field, instance, name)
        kind, sub = _nested(field.annotation)
        if required:
            shown = "required"
        elif kind == "model" and isinstance(default, BaseModel):
            shown = "(keys below)"
        else:
            shown = yaml_value(default)
        rows.append(ConfigKey(path, _section_of(path), _field_type(field), shown, _unit(field),
                              (field.description or "").strip(), required))
        if kind == "model":
            rows += _walk(sub, f"{path}.", default if isinstance(default, BaseModel) else None)
        elif kind == "dict":
            rows += _walk(sub, f"{path}.<name>.", None)
        elif kind == "list":
            rows += _walk(sub, f"{path}[].", None)
    return rows


def reference_keys(model: type[BaseModel] = RunConfig) -> list[ConfigKey]:
    """Every key of the run configuration, in the order of the models.

    Parameters
    ----------
    model : pydantic model class
        Top-level model (default :class:`gep_raster.config.RunConfig`).

    Returns
    -------
    list of ConfigKey
        One row per key, sub-keys after their section's row; a nested model shared by several keys
        (:class:`~gep_raster.config_base.RasterInput`) is listed under each.
    """
    return _walk(model, "", None)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: ``|``, ``*`` and ``<`` escaped (``<name>`` would read as an HTML tag)."""
    for ch in "|*<":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


_INTRO = """# Configuration reference

<!-- generated by `python -m gep_raster.config_reference --markdown docs/configuration.md`
     from the pydantic models of gep_raster/config.py, gep_raster/config_base.py and the services' Config;
     do not edit by hand: tests/test_config_reference.py fails when this file differs from the models. -->

A run is configured by one YAML file, validated by pydantic models: an unknown or missing key, a wrong type
or value is reported with its dotted key, e.g. `config.yaml: inputs.dem.path: file not found: ...`.
Relative paths are resolved from the config file's folder; `${VAR}` is expanded from the environment
(`${GEP_SHARED_DATA}` defaults to `../shared/data` beside the checkout).

* `gep init [PATH]` writes a commented template of every section (replace each `FILL_IN`);
* `gep config-schema [-o FILE]` prints the JSON schema (for editors and other tools).

Key notation: `<name>` is a mapping key you choose (a layer name, a price key); `[]` an item of a list.
*required* means required within its section (an optional section that is left out needs none of its keys).
A default shown is the effective one (e.g. `services.flood_regulation.enabled` is false).
Some keys that are optional here are needed by the services you enable (soil retention needs `inputs.dem`);
`gep run` and `gep validate` say which.
"""


def _table(keys: list[ConfigKey]) -> list[str]:
    """Markdown lines of one reference table (header and one row per key)."""
    lines = ["| key | type / allowed values | default | unit | meaning |", "|---|---|---|---|---|"]
    for k in keys:
        default = "*required*" if k.required else f"`{k.default.replace('|', chr(92) + '|')}`" \
            if k.default != "(keys below)" else "(keys below)"
        lines.append(f"| `{k.path}` | {_cell(k.type)} | {default} | {_cell(k.unit)} | {_cell(k.description)} |")
    return lines


def reference_markdown(model: type[BaseModel] = RunConfig) -> str:
    """The Markdown configuration reference: an introduction and one table per section.

    Parameters
    ----------
    model : pydantic model class
        Top-level model (default :class:`gep_raster.config.RunConfig`).

    Returns
    -------
    str
        Markdown text (the content of ``docs/configuration.md``), ending with a newline.
    """
    sections: dict[str, list[ConfigKey]] = {}
    for key in reference_keys(model):
        sections.setdefault(key.section, []).append(key)
    out = [_INTRO]
    for section, keys in sections.items():
        out.append(f"\n## `{section}`\n" if section != "top level" else "\n## Top level\n")
        out += _table(keys)
    if model is RunConfig:  # the STAC query a raster input's path may be (one table, not one per input)
        from .config_base import StacPath

        out.append("\n## `stac`\n")
        out.append("A raster input's `path` (or `monthly`) given as `{stac: {...}}`: the items' asset files are read "
                   "like local tiles (see README, Inputs).\n")
        out += _table(_walk(StacPath, "", None))
    return "\n".join(out) + "\n"


# -- JSON schema ---------------------------------------------------------------------------------------------------

def config_json_schema(model: type[BaseModel] = RunConfig) -> dict:
    """JSON schema (draft 2020-12) of the run configuration YAML.

    Parameters
    ----------
    model : pydantic model class
        Top-level model (default :class:`gep_raster.config.RunConfig`).

    Returns
    -------
    dict
        pydantic's ``model_json_schema()`` of ``model`` without the fields that are not YAML keys
        (``source_path``, ``config_dir``), with readable names for the services' models
        (``services_soil_retention`` instead of ``gep_raster__services__soil_retention__Config``).
    """
    schema = copy.deepcopy(model.model_json_schema())
    for name, field in model.model_fields.items():
        if field.exclude:
            schema.get("properties", {}).pop(name, None)
    text = re.sub(r"gep_raster__services__(\w+?)__Config", r"services_\1", json.dumps(schema, ensure_ascii=False))
    schema = json.loads(text)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": "gep_raster run configuration"}


# -- YAML template -------------------------------------------------------------------------------------------------

def _matches(path: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _is_active(model: type[BaseModel], path: str, field: FieldInfo) -> bool:
    """Whether a key is written uncommented in the template: a required key, a key of TEMPLATE_NEEDED or
    TEMPLATE_SET, or a section holding one."""
    if field.is_required() or _matches(path, TEMPLATE_NEEDED + TEMPLATE_SET):
        return True
    kind, sub = _nested(field.annotation)
    if kind != "model":
        return False
    if field.get_default() is None and not any(p.startswith(f"{path}.") for p in TEMPLATE_NEEDED):
        return False
    return any(_is_active(sub, f"{path}.{n}", f) for n, f in _yaml_fields(sub).items())


def _comment(field: FieldInfo, lead: str) -> list[str]:
    """Description comment lines of a field (``lead`` = indentation, and ``# `` inside a commented block)."""
    parts = [("REQUIRED. " if field.is_required() else "") + (field.description or "").strip()]
    unit = _unit(field)
    if unit:
        parts.append(f"[{unit}]")
    kind, _ = _nested(field.annotation)
    if kind == "scalar":
        parts.append(f"({_field_type(field)})")
    return textwrap.wrap(" ".join(parts), width=max(40, 116 - len(lead)), initial_indent=f"{lead}# ",
                         subsequent_indent=f"{lead}#   ")


def _block(model: type[BaseModel], prefix: str, instance, indent: str, commented: bool) -> list[str]:
    """Template lines of the keys of ``model``; ``indent`` is the text before a key (spaces, and the ``# `` of a
    commented block); ``commented``: the whole block is commented out."""
    lines: list[str] = []
    for name, field in _yaml_fields(model).items():
        path = f"{prefix}{name}"
        active = not commented and _is_active(model, path, field)
        lead = indent if active or commented else indent + "# "
        lines += _comment(field, indent)
        kind, sub = _nested(field.annotation)
        required = field.is_required()
        default = None if required else _default_of(field, instance, name)
        if kind == "scalar":
            value = FILL_IN if required or _matches(path, TEMPLATE_NEEDED) else yaml_value(default)
            lines.append(f"{lead}{name}: {value}")
            continue
        lines.append(f"{lead}{name}:")
        inner = lead + "  "
        if kind == "model":
            lines += _block(sub, f"{path}.", default if isinstance(default, BaseModel) else None, inner,
                            not active)
        elif kind == "dict":
            lines.append(f"{inner}<name>:")
            lines += _block(sub, f"{path}.<name>.", None, inner + "  ", True)
        else:  # a list of mappings: one item, its first key after "- "
            item = _block(sub, f"{path}[].", None, inner + "  ", True)
            first = next(i for i, ln in enumerate(item) if not ln[len(inner) + 2:].startswith("#"))
            item[first] = inner + "- " + item[first][len(inner) + 2:]
            lines += item
    return lines


_TEMPLATE_HEAD = """\
# gep_raster run configuration: template written by `gep init` (reference: docs/configuration.md).
# Replace every FILL_IN value (the input files, the legend CSV, the output folder; relative paths are
# resolved from this file's folder), then check it with `gep validate` and run it with `gep run`.
# Commented keys show their default; uncomment a key (remove "# ") to change it. The services enabled by
# default need inputs.precipitation (12 monthly rasters), inputs.et and inputs.dem; disable a service
# (services.<name>.enabled: false) to drop its inputs.
"""


def template_yaml(model: type[BaseModel] = RunConfig) -> str:
    """A commented YAML template of the run configuration.

    Every section and key is listed with its description (and unit, type, allowed values) as a comment.
    Required keys, and the inputs the services enabled by default need (:data:`TEMPLATE_NEEDED`), are
    written uncommented with the value ``FILL_IN``; the services' ``enabled`` switches uncommented with their
    defaults; every other key commented out with its default.

    Parameters
    ----------
    model : pydantic model class
        Top-level model (default :class:`gep_raster.config.RunConfig`).

    Returns
    -------
    str
        YAML text; once every ``FILL_IN`` is replaced by a real path (and a run name),
        :func:`gep_raster.config.load_config` accepts it.
    """
    return _TEMPLATE_HEAD + "\n".join(_block(model, "", None, "", False)) + "\n"


def write_template(path: str | Path, *, force: bool = False) -> Path:
    """Write :func:`template_yaml` to ``path``.

    Parameters
    ----------
    path : str or Path
        The YAML file to write (its folder is created).
    force : bool
        Overwrite an existing file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false (nothing is written).
    OSError
        The file cannot be written.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; not overwritten (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_yaml(), encoding="utf-8")
    return path


def write_markdown(path: str | Path = DOCS_FILE) -> Path:
    """Write :func:`reference_markdown` to ``path`` (default ``docs/configuration.md`` of the checkout).

    Parameters
    ----------
    path : str or Path
        The Markdown file to write (overwritten).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OSError
        The file cannot be written.
    """
    path = Path(path)
    path.write_text(reference_markdown(), encoding="utf-8")
    return path


# -- command line --------------------------------------------------------------------------------------------------

def register(app) -> None:
    """Add ``gep config-schema [-o FILE]`` and ``gep init [PATH] [--force]`` to the typer ``app``.

    Parameters
    ----------
    app : typer.Typer
        The application the commands are added to.
    """
    import typer

    @app.command("config-schema")
    def config_schema(output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                            help="Write the schema to this file instead of stdout.")):
        """Print the JSON schema of the run configuration (or write it to -o FILE)."""
        text = json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"
        if output is None:
            typer.echo(text, nl=False)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            typer.secho(f"error: cannot write {output}: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        typer.echo(f"JSON schema written to {output}")

    @app.command("init")
    def init(path: Path = typer.Argument(Path("config.yaml"), help="YAML file to write (default config.yaml)."),
             force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")):
        """Write a commented configuration template with every section; replace its FILL_IN values."""
        try:
            written = write_template(path, force=force)
        except (FileExistsError, OSError) as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        typer.echo(f"template written to {written}: replace every {FILL_IN} value, then `gep validate {written}`")


def main(argv: list[str] | None = None) -> int:
    """``python -m gep_raster.config_reference``: write or check the Markdown reference, or print the schema.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``): ``--markdown FILE`` writes the reference, ``--check FILE`` exits
        1 when FILE differs from what the models give, ``--schema`` prints the JSON schema.

    Returns
    -------
    int
        Exit status (0, or 1 for a stale ``--check`` file).
    """
    parser = argparse.ArgumentParser(prog="python -m gep_raster.config_reference", description=main.__doc__)
    parser.add_argument("--markdown", type=Path, help="write the Markdown reference to this file")
    parser.add_argument("--check", type=Path, help="exit 1 when this Markdown file is not up to date")
    parser.add_argument("--schema", action="store_true", help="print the JSON schema")
    args = parser.parse_args(argv)
    if args.markdown:
        print(f"written {write_markdown(args.markdown)}")
    if args.check:
        if not args.check.is_file() or args.check.read_text(encoding="utf-8") != reference_markdown():
            print(f"{args.check} is stale: run python -m gep_raster.config_reference --markdown {args.check}",
                  file=sys.stderr)
            return 1
    if args.schema:
        print(json.dumps(config_json_schema(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
