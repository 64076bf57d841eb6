"""The words of the report, in English and Chinese: one label table per language, service, ecosystem-type and
account names, and the unit notation.

Every text the report makes comes from here (the templates hold no words of their own); what it quotes from the
run (method notes, sources, assumptions, warnings) is shown as the run wrote it. Both tables have the same keys
(``tests/test_report.py`` checks it).
"""
from __future__ import annotations

import re

__all__ = ["LANGS", "LABELS", "SERVICE_NAMES", "ECOSYSTEM_NAMES", "TERM_NAMES", "labels", "service_name",
           "ecosystem_name", "term_name", "unit_text"]

#: languages of the report
LANGS = ("en", "zh")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Gross Ecosystem Product (GEP) accounting report",
        "subtitle": "{name}, accounting year {year}",
        "generated": "Generated {time} by gep_raster {version} from the run folder {path}",
        "toc": "Contents",
        "s1": "1 Summary", "s2": "2 Accounts per service: physical quantity × unit price = value",
        "s3": "3 Value by ecosystem type", "s4": "4 Accounts per unit", "s5": "5 Maps",
        "s6": "6 Change against another run", "s7": "7 Methods and sources", "s8": "8 Assumptions and warnings",
        "s9": "9 Provenance",
        "indicator": "Indicator", "value": "Value", "unit": "Unit", "value_1e8": "Value (10^8 yuan)",
        "gep": "Gross Ecosystem Product (GEP)", "gep_r": "Regulating services (GEP-R)",
        "epv": "Ecosystem provisioning value (EPV)", "ecv": "Ecosystem cultural value (ECV)",
        "gep_is_gep_r": "GEP = GEP-R: the run has no economic accounts (EPV, ECV not computed)",
        "area": "Area of the account (pixels with a GEP-R value)", "gep_per_km2": "GEP per km²",
        "gep_r_per_km2": "GEP-R per km²", "gep_per_capita": "GEP per capita", "gep_r_per_capita": "GEP-R per capita",
        "gep_gdp": "GEP / GDP", "population": "Population", "gdp": "GDP", "persons": "persons",
        "ratio": "ratio", "source": "Source", "no_population": "Per capita and GEP/GDP: no population or GDP "
        "given (options --population, --gdp; or columns population, gdp_yuan in the statistics table)",
        "scope": "Scope: the whole run area (every pixel of the reference grid with a GEP-R value); the tables per "
                 "unit (section 4) give each administrative and special unit.",
        "share": "Share of GEP-R", "service": "Service", "term": "Term", "physical": "Physical quantity",
        "unit_price": "Unit price", "unit_price_yuan": "Unit value (yuan per unit)", "value_yuan": "Value (yuan/a)",
        "price_key": "Price", "price_value": "Price value", "price_year": "Price year", "evidence": "Evidence",
        "coefficient": "Coefficient", "computed": "Physical × unit value", "check": "Check",
        "rel_diff": "relative difference to the value raster total", "prices_used": "Prices used",
        "price_moved": "moved to {year} by the price index: {orig} × {factor}",
        "total": "Total", "econ_items": "Provisioning and cultural items (statistics allocated to pixels)",
        "item": "Item", "account": "Account", "illustrative": "The statistics are ILLUSTRATIVE, not real statistics.",
        "s2_note": "Each row: the run's physical total (sum of the physical raster) × the unit value (the price terms "
                   "of the method: Σ coefficient × price) = value; the value column is the sum of the value raster.",
        "ecosystem": "Ecosystem type", "class_area": "Area (km²)", "unclassified": "no land-cover class",
        "matrix_note": "Sums of the per-pixel value rasters grouped by the land-cover class of each pixel, read block "
                       "by block from the run's land cover (scenario edits applied) and mapped to ecosystem types by "
                       "the run's legend; exact, no sampling. Largest relative difference of a row total to the "
                       "manifest total: {diff}.",
        "matrix_missing": "The matrix could not be computed: {reason}",
        "legend_classes": "Land-cover classes and their ecosystem types",
        "code": "Code", "name": "Name", "pixels": "Pixels",
        "layer": "Layer", "layer_role_admin": "administrative", "layer_role_special_unit": "special unit",
        "values_table": "Value per service (yuan/a)", "physical_table": "Physical quantities",
        "id": "Id", "area_km2": "Area (km²)", "valid_area_km2": "Valid area (km²)",
        "gep_r_yuan_per_km2": "GEP-R per km² (yuan/km²/a)", "gep_yuan_per_km2": "GEP per km² (yuan/km²/a)",
        "nests_in": "nested in layer {parent}",
        "map_gep_r": "GEP-R density", "map_gep": "GEP density", "map_service": "{name} density",
        "map_delta": "Change of GEP-R density ({a} → {b})", "map_bars": "Value per service",
        "map_caption": "Value per km² and year (value raster / pixel area); outlines: {layers}. Colour bar, scale bar "
                       "and north arrow on each map.",
        "fig_lang_note": "Figure labels are in English: no CJK font is installed for matplotlib.",
        "change_of": "Change from run a ({a}, {ya}) to run b ({b}, {yb}): b − a",
        "change_role_b": "This report's run is run b.", "change_role_a": "This report's run is run a.",
        "change_role_none": "WARNING: neither run of the change folder is this report's run (run hashes differ).",
        "run_a": "Run a", "run_b": "Run b", "delta": "Δ (b − a)", "growth": "Growth (%)",
        "change_totals": "Totals of the run area", "change_layer": "Change per unit, layer {layer}",
        "config_differences": "Configuration keys that differ", "key": "Key", "warnings": "Warnings",
        "no_change": "No change folder given (option --compare CHANGE_DIR, a `gep compare` output).",
        "profile": "Method profile", "profile_overridden": "Overridden by the run's own keys",
        "profile_missing": "Services of the profile's account not computed",
        "methods": "Methods per service (as recorded by the run)", "parameters": "Parameters used",
        "parameter": "Parameter", "origin": "Origin", "evidence_marks": "Evidence marks: V verified in the primary "
        "source, V-calc arithmetic on verified numbers, V2 secondary source only, U unverified / assumption, "
        "EX illustrative.",
        "assumptions": "Assumptions (every [U] or [V2] number the run used)",
        "plausibility": "Plausibility checks", "status": "Status", "low": "Low", "high": "High",
        "plausibility_warnings": "Plausibility warnings", "validation_warnings": "Warnings accepted at the start of "
        "the run", "diagnostics": "Diagnostics", "none": "none",
        "hierarchy": "Nesting checks (children add up to their parent)", "max_rel_diff": "largest relative difference",
        "run_hash": "Run hash", "config_sha256": "Configuration sha256", "version": "gep_raster version",
        "created": "Run finished (UTC)", "config_file": "Configuration file", "run_dir": "Run folder",
        "input_checksums": "Input files and their sha256", "file": "File", "bytes": "Bytes",
        "package_versions": "Package versions", "package": "Package", "configuration": "Configuration (as run)",
        "report_files": "This report: report_{lang}.html; PDF and sha256 of both in report_manifest.json.",
        "yes": "yes", "no": "no", "ok": "ok", "warning": "warning",
    },
    "zh": {
        "title": "生态系统生产总值（GEP）核算报告",
        "subtitle": "{name}，核算年份 {year}",
        "generated": "由 gep_raster {version} 于 {time} 根据运行目录 {path} 生成",
        "toc": "目录",
        "s1": "一、核算结果摘要", "s2": "二、分服务核算：实物量 × 单价 = 价值量",
        "s3": "三、分生态系统类型价值", "s4": "四、分单元核算表", "s5": "五、专题图",
        "s6": "六、与另一次核算的变化", "s7": "七、核算方法与数据来源", "s8": "八、假设与合理性提示",
        "s9": "九、数据溯源",
        "indicator": "指标", "value": "数值", "unit": "单位", "value_1e8": "数值（亿元）",
        "gep": "生态系统生产总值（GEP）", "gep_r": "调节服务价值（GEP-R）",
        "epv": "物质产品价值（EPV）", "ecv": "文化服务价值（ECV）",
        "gep_is_gep_r": "GEP = GEP-R：本次运行未核算经济账户（未计 EPV、ECV）",
        "area": "核算面积（有 GEP-R 值的像元）", "gep_per_km2": "单位面积 GEP",
        "gep_r_per_km2": "单位面积 GEP-R", "gep_per_capita": "人均 GEP", "gep_r_per_capita": "人均 GEP-R",
        "gep_gdp": "GEP 与 GDP 之比", "population": "人口", "gdp": "地区生产总值（GDP）", "persons": "人",
        "ratio": "比值", "source": "来源", "no_population": "人均值与 GEP/GDP：未提供人口或 GDP（选项 --population、"
        "--gdp，或统计表中的 population、gdp_yuan 列）",
        "scope": "范围：整个运行区域（参考网格上所有有 GEP-R 值的像元）；各行政单元与特定地域单元见第四部分。",
        "share": "占 GEP-R 比例", "service": "服务", "term": "分项", "physical": "实物量",
        "unit_price": "单价", "unit_price_yuan": "单位价值（元/单位）", "value_yuan": "价值量（元/年）",
        "price_key": "价格", "price_value": "价格数值", "price_year": "价格年份", "evidence": "证据等级",
        "coefficient": "系数", "computed": "实物量 × 单位价值", "check": "核对",
        "rel_diff": "与价值栅格合计的相对差", "prices_used": "所用价格",
        "price_moved": "按价格指数折算至 {year} 年：{orig} × {factor}",
        "total": "合计", "econ_items": "物质产品与文化服务分项（统计数据分配至像元）",
        "item": "分项", "account": "账户", "illustrative": "统计数据为示意数据，并非真实统计。",
        "s2_note": "每行：实物量合计（实物量栅格之和）× 单位价值（方法中的价格项：Σ 系数 × 价格）= 价值量；"
                   "价值量列为价值栅格之和。",
        "ecosystem": "生态系统类型", "class_area": "面积（平方公里）", "unclassified": "无土地覆被类别",
        "matrix_note": "按各像元的土地覆被类别对逐像元价值栅格求和（分块读取本次运行的土地覆被，已应用情景编辑），"
                       "再按本次运行的图例归入生态系统类型；精确求和，无抽样。各行合计与清单合计的最大相对差：{diff}。",
        "matrix_missing": "无法计算分生态系统类型矩阵：{reason}",
        "legend_classes": "土地覆被类别及其生态系统类型",
        "code": "代码", "name": "名称", "pixels": "像元数",
        "layer": "图层", "layer_role_admin": "行政单元", "layer_role_special_unit": "特定地域单元",
        "values_table": "各服务价值量（元/年）", "physical_table": "各服务实物量",
        "id": "编码", "area_km2": "面积（平方公里）", "valid_area_km2": "有效面积（平方公里）",
        "gep_r_yuan_per_km2": "单位面积 GEP-R（元/平方公里/年）", "gep_yuan_per_km2": "单位面积 GEP（元/平方公里/年）",
        "nests_in": "嵌套于图层 {parent}",
        "map_gep_r": "GEP-R 密度", "map_gep": "GEP 密度", "map_service": "{name}密度",
        "map_delta": "GEP-R 密度变化（{a} → {b}）", "map_bars": "各服务价值",
        "map_caption": "每平方公里每年的价值（价值栅格 / 像元面积）；边界：{layers}。每幅图均有色标、比例尺和指北针。",
        "fig_lang_note": "图中标注为英文：matplotlib 未找到中文字体。",
        "change_of": "由运行 a（{a}，{ya}）到运行 b（{b}，{yb}）的变化：b − a",
        "change_role_b": "本报告的运行为运行 b。", "change_role_a": "本报告的运行为运行 a。",
        "change_role_none": "警告：变化目录中的两次运行都不是本报告的运行（运行哈希不同）。",
        "run_a": "运行 a", "run_b": "运行 b", "delta": "变化量（b − a）", "growth": "增长率（%）",
        "change_totals": "运行区域合计", "change_layer": "分单元变化，图层 {layer}",
        "config_differences": "配置差异", "key": "键", "warnings": "警告",
        "no_change": "未提供变化目录（选项 --compare CHANGE_DIR，即 `gep compare` 的输出）。",
        "profile": "方法配置", "profile_overridden": "被本次运行配置覆盖", "profile_missing": "该核算体系中未计算的服务",
        "methods": "各服务核算方法（运行记录原文）", "parameters": "所用参数",
        "parameter": "参数", "origin": "出处", "evidence_marks": "证据等级：V 已在原始文献核实，V-calc 由已核实数值计算，"
        "V2 仅见二手来源，U 未核实/假设，EX 示意。",
        "assumptions": "假设（本次运行使用的所有 [U] 或 [V2] 数值）",
        "plausibility": "合理性检查", "status": "状态", "low": "下限", "high": "上限",
        "plausibility_warnings": "合理性提示", "validation_warnings": "运行开始时已接受的警告",
        "diagnostics": "诊断信息", "none": "无",
        "hierarchy": "嵌套检查（下级单元之和等于上级单元）", "max_rel_diff": "最大相对差",
        "run_hash": "运行哈希", "config_sha256": "配置 sha256", "version": "gep_raster 版本",
        "created": "运行完成时间（UTC）", "config_file": "配置文件", "run_dir": "运行目录",
        "input_checksums": "输入文件及其 sha256", "file": "文件", "bytes": "字节数",
        "package_versions": "软件包版本", "package": "软件包", "configuration": "运行配置",
        "report_files": "本报告：report_{lang}.html；PDF 及两者的 sha256 见 report_manifest.json。",
        "yes": "是", "no": "否", "ok": "正常", "warning": "提示",
    },
}

#: service key -> (English, Chinese) name
SERVICE_NAMES = {
    "water_conservation": ("Water conservation", "水源涵养"),
    "soil_retention": ("Soil retention", "土壤保持"),
    "carbon_sequestration": ("Carbon sequestration", "固碳"),
    "oxygen_release": ("Oxygen release", "释氧"),
    "air_purification": ("Air purification", "空气净化"),
    "water_purification": ("Water purification", "水质净化"),
    "climate_regulation": ("Climate regulation", "气候调节"),
    "flood_regulation": ("Flood regulation", "洪水调蓄"),
    "pest_control": ("Pest control", "病虫害控制"),
    "sand_fixation": ("Windbreak and sand fixation", "防风固沙"),
    "species_conservation": ("Species conservation", "物种保育"),
    "gep_r": ("GEP-R", "调节服务价值"),
    "provisioning": ("Provisioning (EPV)", "物质产品（EPV）"),
    "cultural": ("Cultural (ECV)", "文化服务（ECV）"),
    "gep": ("GEP", "生态系统生产总值"),
}

#: ecosystem type of the legends -> (English, Chinese) name
ECOSYSTEM_NAMES = {
    "forest": ("Forest", "森林"), "shrub": ("Shrub", "灌丛"), "grassland": ("Grassland", "草地"),
    "wetland": ("Wetland", "湿地"), "cropland": ("Cropland", "农田"), "urban": ("Urban", "城镇"),
    "water": ("Water", "水体"), "bare": ("Bare land", "荒漠/裸地"),
}

#: term of a multi-term service (suffix of its physical raster) -> (English, Chinese) name
TERM_NAMES = {
    "so2": ("SO2", "二氧化硫"), "nox": ("NOx", "氮氧化物"), "dust": ("Dust", "粉尘"), "cod": ("COD", "化学需氧量"),
    "nh3n": ("NH3-N", "氨氮"), "tp": ("TP", "总磷"), "agriculture": ("Agriculture", "农业"),
    "forestry": ("Forestry", "林业"), "fishery": ("Fishery", "渔业"), "water_supply": ("Water supply", "水资源"),
    "hydropower": ("Hydropower", "水电"), "tourism": ("Tourism", "旅游"),
    "forest": ("natural forest", "天然林"), "grassland": ("natural grassland", "天然草地"),
}


def _check(lang: str) -> int:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(repr(x) for x in LANGS)}; got {lang!r}")
    return LANGS.index(lang)


def labels(lang: str) -> dict[str, str]:
    """The report's label table of ``lang`` (a copy; ``{...}`` fields are filled by the report).

    Raises
    ------
    ValueError
        If ``lang`` is not ``"en"`` or ``"zh"``.
    """
    _check(lang)
    return dict(LABELS[lang])


def service_name(key: str, lang: str) -> str:
    """Name of a service (``water_conservation``, ``gep_r``, ``provisioning`` ...) in ``lang``; unknown keys are
    returned with ``_`` read as a space."""
    i = _check(lang)
    return SERVICE_NAMES[key][i] if key in SERVICE_NAMES else key.replace("_", " ")


def ecosystem_name(key: str, lang: str) -> str:
    """Name of an ecosystem type of the legends in ``lang`` (unknown types as given)."""
    i = _check(lang)
    return ECOSYSTEM_NAMES[key][i] if key in ECOSYSTEM_NAMES else str(key)


def term_name(key: str, service: str, lang: str) -> str:
    """Name of one valuation term: its physical raster key (``air_purification_so2_t``) without the service prefix
    and the unit suffix, translated (``SO2`` / ``二氧化硫``); a service's only term is the service's name."""
    i = _check(lang)
    rest = key[len(service) + 1:] if key.startswith(service + "_") else key
    rest = rest.rsplit("_", 1)[0] if "_" in rest else ""
    if not rest:
        return service_name(service, lang)
    return f"{service_name(service, lang)}: {TERM_NAMES[rest][i] if rest in TERM_NAMES else rest}"


_UNIT_ZH = {"a": "年", "yuan": "元"}


def unit_text(unit: str | None, lang: str) -> str:
    """A unit as the report prints it: ``m3`` as m³, ``km2`` as km², ``CO2``/``O2`` with subscripts; in Chinese
    also ``/a`` as /年 and ``yuan`` as 元 (``yuan/a`` → 元/年, ``t CO2/a`` → t CO₂/年). ``" per pixel"`` is dropped."""
    _check(lang)
    u = str(unit or "").replace(" per pixel", "")
    u = re.sub(r"\bm3\b", "m³", u)
    u = re.sub(r"\bkm2\b", "km²", u)
    u = re.sub(r"\bm2\b", "m²", u)
    u = re.sub(r"\bCO2\b", "CO₂", u)
    u = re.sub(r"\bO2\b", "O₂", u)
    if lang == "zh":
        u = re.sub(r"\b(a|yuan)\b", lambda m: _UNIT_ZH[m.group(1)], u)
    return u
