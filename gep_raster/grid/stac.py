"""A raster input given as a STAC query: search a catalogue, return the asset hrefs in mosaic order.

:func:`search_stac` resolves a query (collection, asset key, datetime, bbox) against

* a **STAC API** (an ``http(s)`` landing page whose ``conformsTo`` lists STAC API - Item Search and that has a
  ``rel="search"`` link): the search runs on the server through pystac-client
  (``Client.open(...).search(collections=..., bbox=..., datetime=..., max_items=...)``);
* a **static catalogue** (a local ``catalog.json`` / ``collection.json``, or a folder holding one, or the ``http(s)``
  URL of a static ``catalog.json``): pystac walks it recursively and the items are filtered here by collection id,
  bbox intersection and datetime overlap, with the semantics of Item Search.

It only searches and orders; the rasters are read by the engine's lazy tile mosaic (first valid pixel wins in list
order).

Mosaic order
------------
The assets come **newest first** by the item's ``datetime`` (its ``start_datetime`` when ``datetime`` is null), ties
broken by item id ascending (then collection id). Read first-valid-wins, where items overlap the newest valid pixel
wins and older items only fill its nodata. Items without any datetime (not valid STAC) come last, by id. The order is
the same for a static walk and an API search (the server's order is not used), so a catalogue published both ways
gives the same mosaic.

Matching rules (static walk, as STAC API - Item Search defines them)
--------------------------------------------------------------------
* collection: the item's ``collection`` field (or the id of the collection holding it). Items of other collections are
  not even read: the walk skips the item links of a collection whose id differs (but still descends into its
  children);
* bbox (WGS84 lon/lat, ``[west, south, east, north]``; ``west > east`` crosses the antimeridian): the item's ``bbox``
  (2D or 3D), or the bounds of its ``geometry`` when it has no bbox, must intersect it (touching counts); items with a
  null geometry never match a bbox query;
* datetime: a single instant or date, or an interval ``start/end`` with ``..`` (or empty) for an open end. A date
  ``2020-01-01`` (or ``2020-01``, ``2020``) stands for the whole day (month, year): as a start it means its first
  instant, as an end its last. The item matches when its ``[start_datetime, end_datetime]`` range (or its
  ``datetime``) overlaps the query interval, ends included. Times without an offset are UTC.

References
----------
* STAC API - Item Search: https://github.com/radiantearth/stac-api-spec/tree/v1.0.0/item-search
  (``collections``, ``bbox``, ``datetime`` query parameters; conformance class
  ``https://api.stacspec.org/v1.0.0/item-search``);
* datetime syntax: RFC 3339 date-times and intervals, https://github.com/radiantearth/stac-api-spec/tree/v1.0.0/
  item-search#query-parameter-table and OGC API - Features Part 1, ``datetime`` parameter;
* STAC Item spec (``datetime``, ``start_datetime``/``end_datetime``, ``bbox``, asset ``href`` resolution against the
  item's self link): https://github.com/radiantearth/stac-spec/blob/v1.1.0/item-spec/item-spec.md

Errors: a bad query (datetime syntax, bbox, max_items, an unsupported URL scheme) is a
:class:`~gep_raster.errors.ConfigError`; everything about the catalogue and its content (not found, not JSON, not
STAC, HTTP errors, nothing matched, too much matched, a missing asset key, an unresolvable or missing asset file) is a
:class:`StacError` (an :class:`~gep_raster.errors.InputError`). Every message starts with the config key and names the
catalogue; no pystac/requests traceback escapes (errors are re-raised ``from None``).

Thread safety: every call builds its own HTTP session and pystac I/O object and changes no global state
(``pystac.StacIO.set_default`` is not used), so calls may run in parallel threads.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime as _dt
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

from ..errors import ConfigError, InputError

__all__ = ["StacAsset", "StacError", "StacResolution", "search_stac"]

#: page size asked of a STAC API (``limit``): small enough for every server's maximum, large enough for few pages
PAGE_LIMIT = 100

_DATE_RE = re.compile(r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2}))?)?$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_ONE_US = timedelta(microseconds=1)
_UTC = timezone.utc


class StacError(InputError):
    """A STAC catalogue cannot be read, or its content does not answer the query."""


@dataclass(frozen=True)
class StacAsset:
    """One raster asset of a matched STAC item.

    Attributes
    ----------
    item_id : str
        The item's ``id``.
    collection : str or None
        The item's collection id (``collection`` field, or the collection holding it in a static catalogue).
    datetime : str or None
        ISO 8601 UTC (``2024-01-01T00:00:00Z``): the item's ``datetime``, or its ``start_datetime`` when that is null.
    asset_key : str
        Key of the asset in the item's ``assets``.
    href : str
        Absolute href: a local absolute path (``file://`` URLs are turned into paths) or an ``http(s)`` URL, resolved
        against the item's self href when relative in the item.
    """

    item_id: str
    collection: str | None
    datetime: str | None
    asset_key: str
    href: str


@dataclass(frozen=True)
class StacResolution:
    """The result of :func:`search_stac`: the matched assets in mosaic order and how they were found.

    Attributes
    ----------
    catalog : str
        The catalogue as given; a local one as the absolute path of the JSON file opened.
    api : bool
        True when searched through a STAC API (pystac-client), False for a static catalogue walk.
    query : dict
        JSON-able: ``collection``, ``asset``, ``datetime`` (as given), ``bbox`` (list or None), ``max_items`` and
        ``filter``, the filter actually used (``collections``, ``bbox``, ``datetime`` as a normalised RFC 3339
        instant or ``start/end`` interval with ``..`` for open ends; for an API also the ``search`` endpoint URL).
    assets : tuple of StacAsset
        Newest first, ties by item id (see the module docstring).
    """

    catalog: str
    api: bool
    query: dict = field(hash=False)
    assets: tuple[StacAsset, ...]

    @property
    def hrefs(self) -> list[str]:
        """The asset hrefs in mosaic order (first valid pixel wins).

        Returns
        -------
        list of str
        """
        return [a.href for a in self.assets]

    def describe(self) -> dict:
        """A JSON-able record for the run manifest.

        Returns
        -------
        dict
            ``{"catalog", "api", "query", "items": [{"id", "collection", "datetime", "asset", "href"}, ...]}``, items in
            mosaic order.
        """
        return {"catalog": self.catalog, "api": self.api, "query": json.loads(json.dumps(self.query)),
                "items": [{"id": a.item_id, "collection": a.collection, "datetime": a.datetime, "asset": a.asset_key,
                           "href": a.href} for a in self.assets]}


# -- the query -------------------------------------------------------------------------------------------------------
def _iso(t: _dt) -> str:
    t = t.astimezone(_UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}" if t.microsecond else "") + "Z"


def _aware(t: _dt) -> _dt:
    return t.replace(tzinfo=_UTC) if t.tzinfo is None else t


def _datetime_part(name: str, text: str, value: str, *, end: bool) -> _dt | None:
    """One side of a datetime interval: None when open, else the first (or, for an end, the last) instant."""
    text = text.strip()
    if text in ("", ".."):
        return None
    m = _DATE_RE.match(text)
    if m:
        y, mo, d = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
        try:
            start = _dt(y, mo, d, tzinfo=_UTC)
        except ValueError as e:
            raise ConfigError(f"{name}: datetime {value!r}: {text!r} is not a valid date ({e})") from None
        if not end:
            return start
        if m["d"]:
            nxt = start + timedelta(days=1)
        elif m["m"]:
            nxt = _dt(y + (mo == 12), mo % 12 + 1, 1, tzinfo=_UTC)
        else:
            nxt = _dt(y + 1, 1, 1, tzinfo=_UTC)
        return nxt - _ONE_US
    if not _DATETIME_RE.match(text):
        raise ConfigError(f"{name}: datetime {value!r}: {text!r} is not an RFC 3339 date-time or date (expected e.g. "
                          "'2020-01-01T00:00:00Z', '2020-01-01', or an interval '2020-01-01/2020-12-31' with '..' "
                          "for an open end)")
    try:
        t = _dt.fromisoformat(text.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"{name}: datetime {value!r}: {text!r} is not a valid date-time ({e})") from None
    return _aware(t)


def parse_datetime_query(name: str, value: str | None) -> tuple[_dt | None, _dt | None, str | None]:
    """Parse a STAC datetime query into an inclusive UTC interval.

    Parameters
    ----------
    name : str
        Config key, for messages.
    value : str or None
        A single RFC 3339 date-time or date (``2020-01-01T00:00:00Z``, ``2020-06-01``, ``2020-06``, ``2020``), or an
        interval ``start/end`` where either end may be ``..`` or empty (open), as in STAC API - Item Search
        (https://github.com/radiantearth/stac-api-spec/tree/v1.0.0/item-search#query-parameter-table).

    Returns
    -------
    start, end : datetime or None
        Inclusive bounds (tz-aware UTC); None for an open end. A date expands to its whole day (month, year).
    normalised : str or None
        The interval as sent to a STAC API: an instant, or ``start/end`` with ``..`` for open ends; None when
        ``value`` is None.

    Raises
    ------
    ConfigError
        Bad syntax, an invalid date, start after end, or both ends open.
    """
    if value is None:
        return None, None, None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: datetime must be a non-empty string such as '2020-01-01/2020-12-31', got {value!r}")
    parts = value.split("/")
    if len(parts) > 2:
        raise ConfigError(f"{name}: datetime {value!r}: at most one '/' (an interval start/end)")
    if len(parts) == 1:
        start = _datetime_part(name, parts[0], value, end=False)
        if start is None:
            raise ConfigError(f"{name}: datetime {value!r}: give a date-time, a date or an interval")
        end = _datetime_part(name, parts[0], value, end=True)
    else:
        start = _datetime_part(name, parts[0], value, end=False)
        end = _datetime_part(name, parts[1], value, end=True)
        if start is None and end is None:
            raise ConfigError(f"{name}: datetime {value!r}: both ends of the interval are open; drop datetime instead")
    if start is not None and end is not None and start > end:
        raise ConfigError(f"{name}: datetime {value!r}: the start is after the end")
    if start is not None and start == end:
        return start, end, _iso(start)
    return start, end, f"{_iso(start) if start else '..'}/{_iso(end) if end else '..'}"


def _check_bbox(name: str, bbox) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    try:
        vals = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: bbox must be 4 numbers [west, south, east, north] (WGS84 degrees), got {bbox!r}") \
            from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{name}: bbox must be 4 finite numbers [west, south, east, north] (WGS84 degrees), "
                          f"got {list(bbox)!r}")
    w, s, e, n = vals
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise ConfigError(f"{name}: bbox {list(vals)} is not [west, south, east, north] in WGS84 degrees "
                          "(longitudes in [-180, 180], -90 <= south <= north <= 90; west > east crosses the "
                          "antimeridian)")
    return vals


def _check_args(name, asset, collection, max_items):
    if not isinstance(asset, str) or not asset:
        raise ConfigError(f"{name}: asset must be the non-empty key of the raster asset in the items, got {asset!r}")
    if collection is not None and (not isinstance(collection, str) or not collection):
        raise ConfigError(f"{name}: collection must be a non-empty collection id, got {collection!r}")
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ConfigError(f"{name}: max_items must be a positive integer, got {max_items!r}")


# -- reading JSON (local files and http) -----------------------------------------------------------------------------
class _FetchError(Exception):
    def __init__(self, href: str, reason: str):
        super().__init__(f"{href}: {reason}")
        self.href, self.reason = href, reason


def _is_url(s: str) -> bool:
    return urlparse(s).scheme.lower() in ("http", "https")


def _http_reason(e: Exception, timeout_s: float) -> str:
    import requests

    if isinstance(e, requests.Timeout):
        return f"no answer within {timeout_s:g} s (timeout)"
    if isinstance(e, requests.ConnectionError):
        inner = e
        while inner is not None:
            if isinstance(inner, ConnectionRefusedError) or getattr(inner, "errno", None) == errno.ECONNREFUSED:
                return "connection refused (no server listening there?)"
            inner = inner.__cause__ or inner.__context__
        text = str(e)
        if "refused" in text.lower():
            return "connection refused (no server listening there?)"
        return f"cannot connect ({type(e).__name__}: {text[:200]})"
    return f"{type(e).__name__}: {str(e)[:200]}"


def _make_io(timeout_s: float):
    """A pystac StacIO reading local files and http(s) with a timeout, raising :class:`_FetchError`."""
    import pystac
    import requests

    class _IO(pystac.stac_io.DefaultStacIO):
        def __init__(self):
            super().__init__()
            self.session = requests.Session()
            self.last_href: str | None = None

        def read_text_from_href(self, href: str) -> str:
            self.last_href = href
            if _is_url(href):
                try:
                    r = self.session.get(href, timeout=timeout_s, headers={"Accept": "application/json"})
                except requests.RequestException as e:
                    raise _FetchError(href, _http_reason(e, timeout_s)) from None
                if r.status_code >= 400:
                    raise _FetchError(href, f"HTTP {r.status_code} {r.reason or ''}".rstrip())
                r.encoding = r.encoding or "utf-8"
                return r.text
            path = _local_path(href)
            try:
                return Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise _FetchError(path, "file not found") from None
            except (OSError, UnicodeDecodeError) as e:
                raise _FetchError(path, f"cannot read ({type(e).__name__}: {e})") from None

        def read_json(self, source, *args, **kwargs):
            text = self.read_text(source, *args, **kwargs)
            try:
                return json.loads(text)
            except ValueError as e:
                raise _FetchError(str(self.last_href), f"not JSON ({e})") from None

    return _IO()


def _local_path(href: str) -> str:
    p = urlparse(href)
    if p.scheme.lower() == "file":
        return unquote(p.path)
    return href


def _locate(name: str, catalog: str, base_dir: Path | None) -> tuple[str, bool]:
    """(href to open, is_url); local paths absolute, folders resolved to their catalog.json / collection.json."""
    if not isinstance(catalog, str) or not catalog.strip():
        raise ConfigError(f"{name}: catalog must be a STAC API URL or a path/URL of a static catalog.json, "
                          f"got {catalog!r}")
    scheme = urlparse(catalog).scheme.lower()
    if scheme in ("http", "https"):
        return catalog, True
    if len(scheme) > 1 and scheme != "file":
        raise ConfigError(f"{name}: catalog {catalog!r}: unsupported URL scheme {scheme!r} (use http(s) or a local "
                          "path)")
    p = Path(_local_path(catalog)).expanduser()
    if not p.is_absolute():
        p = Path(base_dir if base_dir is not None else Path.cwd()) / p
    p = Path(os.path.abspath(p))
    if p.is_dir():
        for fname in ("catalog.json", "collection.json"):
            if (p / fname).is_file():
                return str(p / fname), False
        raise StacError(f"{name}: STAC catalogue {p}: a folder without catalog.json or collection.json")
    if not p.exists():
        raise StacError(f"{name}: STAC catalogue {p} not found")
    return str(p), False


def _open_root(name: str, href: str, io):
    """The root Catalog/Collection of a static catalogue, or the landing page dict of an http(s) one."""
    import pystac

    try:
        d = io.read_json(href)
    except _FetchError as e:
        raise StacError(f"{name}: STAC catalogue {href}: {e.reason}") from None
    if not isinstance(d, dict):
        raise StacError(f"{name}: STAC catalogue {href}: not a STAC catalogue (the JSON is a {type(d).__name__}, "
                        "not an object)")
    typ = d.get("type")
    if typ not in ("Catalog", "Collection"):
        what = {"Feature": "a STAC Item", "FeatureCollection": "an ItemCollection / GeoJSON"}.get(typ, None)
        raise StacError(f"{name}: STAC catalogue {href}: not a STAC catalogue or collection"
                        + (f" ({what}; give the catalog.json or collection.json holding it)" if what else
                           f" (its 'type' is {typ!r}, expected 'Catalog' or 'Collection')"))
    try:
        root = io.stac_object_from_dict(d, href=href, root=None, preserve_dict=True)
    except Exception as e:  # pystac: STACTypeError, KeyError on missing fields, ...
        raise StacError(f"{name}: STAC catalogue {href}: not valid STAC ({type(e).__name__}: {e})") from None
    if not isinstance(root, pystac.Catalog):
        raise StacError(f"{name}: STAC catalogue {href}: not a STAC catalogue or collection")
    return root, d


def _is_api(landing: dict) -> bool:
    """A STAC API landing page: a Catalog conforming to Item Search (the check pystac-client's ``search`` makes) with a
    ``rel="search"`` link."""
    from pystac_client.conformance import ConformanceClasses

    pattern = ConformanceClasses.ITEM_SEARCH.pattern
    conforms = landing.get("conformsTo") or []
    if landing.get("type") != "Catalog" or not isinstance(conforms, list):
        return False
    has_search = any(isinstance(ln, dict) and ln.get("rel") == "search" for ln in landing.get("links") or [])
    return has_search and any(isinstance(u, str) and pattern.match(u) for u in conforms)


# -- matching and ordering -------------------------------------------------------------------------------------------
def _item_interval(item) -> tuple[_dt | None, _dt | None]:
    cm = item.common_metadata
    start, end, dt = cm.start_datetime, cm.end_datetime, item.datetime
    start = start or dt or end
    end = end or dt or start
    return (_aware(start) if start else None), (_aware(end) if end else None)


def _item_bounds(item) -> tuple[float, float, float, float] | None:
    b = item.bbox
    if b and len(b) in (4, 6):
        half = len(b) // 2
        return float(b[0]), float(b[1]), float(b[half]), float(b[half + 1])
    if item.geometry:
        from shapely.geometry import shape

        g = shape(item.geometry)
        return None if g.is_empty else tuple(float(v) for v in g.bounds)
    return None


def _lon_ranges(w: float, e: float) -> list[tuple[float, float]]:
    return [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]


def bbox_intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two WGS84 bboxes ``[west, south, east, north]`` intersect (touching counts; ``west > east`` crosses the
    antimeridian).

    Parameters
    ----------
    a, b : tuple of 4 float

    Returns
    -------
    bool
    """
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(x0 <= y1 and y0 <= x1 for x0, x1 in _lon_ranges(a[0], a[2]) for y0, y1 in _lon_ranges(b[0], b[2]))


def _matches(item, bbox, start, end) -> bool:
    if bbox is not None:
        ib = _item_bounds(item)
        if ib is None or not bbox_intersects(ib, bbox):
            return False
    if start is not None or end is not None:
        i0, i1 = _item_interval(item)
        if i0 is None:
            return False
        if (end is not None and i0 > end) or (start is not None and i1 < start):
            return False
    return True


def _sort_key(entry):
    item, coll = entry
    t = _item_interval(item)[0] if item.datetime is None else _aware(item.datetime)
    return (t is None, -(t.timestamp()) if t is not None else 0.0, item.id, coll or "")


def _describe_query(collection, bbox, datetime) -> str:
    parts = [f"collection={collection!r}" if collection else "any collection"]
    if bbox is not None:
        parts.append(f"bbox={list(bbox)}")
    if datetime is not None:
        parts.append(f"datetime={datetime!r}")
    return ", ".join(parts)


def _to_assets(name: str, label: str, entries: list, asset: str) -> tuple[StacAsset, ...]:
    out = []
    for item, coll in sorted(entries, key=_sort_key):
        a = item.assets.get(asset)
        if a is None:
            keys = ", ".join(sorted(item.assets)) or "none"
            raise StacError(f"{name}: STAC catalogue {label}: item {item.id!r}"
                            + (f" (collection {coll!r})" if coll else "")
                            + f" has no asset {asset!r}; its asset keys: {keys}")
        href = a.get_absolute_href()
        if href is None:
            raise StacError(f"{name}: STAC catalogue {label}: item {item.id!r} asset {asset!r} href {a.href!r} is "
                            "relative and cannot be resolved (the item has no self href); publish absolute asset "
                            "hrefs or a 'self' link in the item")
        if not _is_url(href):
            href = os.path.abspath(_local_path(href))
            if not os.path.exists(href):
                raise StacError(f"{name}: STAC catalogue {label}: item {item.id!r} asset {asset!r}: file {href} "
                                "not found")
        t = _item_interval(item)[0] if item.datetime is None else _aware(item.datetime)
        out.append(StacAsset(item.id, coll, _iso(t) if t is not None else None, asset, href))
    return tuple(out)


# -- static walk and API search --------------------------------------------------------------------------------------
def _iter_items(root, collection: str | None, seen: set[str]) -> Iterator[tuple[Any, str | None]]:
    """(item, collection id) of every item under ``root``, skipping the items of other collections."""
    import pystac

    stack, visited = [root], set()
    while stack:
        cat = stack.pop()
        key = cat.get_self_href() or id(cat)
        if key in visited:
            continue
        visited.add(key)
        is_coll = isinstance(cat, pystac.Collection)
        if is_coll:
            seen.add(cat.id)
        if not (is_coll and collection is not None and cat.id != collection):
            for item in cat.get_items():
                coll = item.collection_id or (cat.id if is_coll else None)
                if coll:
                    seen.add(coll)
                yield item, coll
        stack.extend(reversed(list(cat.get_children())))


def _find_fetch_error(e: BaseException | None) -> _FetchError | None:
    """The :class:`_FetchError` behind ``e`` (pystac wraps link resolution errors in a ``STACError``)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, _FetchError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _walk_static(name, label, root, io, collection, bbox, start, end, max_items, query_text) -> list:
    matched, seen = [], set()
    try:
        for item, coll in _iter_items(root, collection, seen):
            if collection is not None and coll != collection:
                continue
            if _matches(item, bbox, start, end):
                matched.append((item, coll))
                if len(matched) > max_items:
                    raise StacError(f"{name}: STAC catalogue {label}: more than max_items={max_items} items match "
                                    f"({query_text}); narrow the query (collection, bbox, datetime) or raise "
                                    "max_items")
    except StacError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed child or item: say where, never a raw pystac traceback
        fetch = _find_fetch_error(e)
        if fetch is not None:
            raise StacError(f"{name}: STAC catalogue {label}: cannot read {fetch.href} while walking the catalogue: "
                            f"{fetch.reason}") from None
        raise StacError(f"{name}: STAC catalogue {label}: invalid STAC object at {io.last_href} "
                        f"({type(e).__name__}: {e})") from None
    if not matched:
        cols = ", ".join(sorted(seen)) or "none"
        raise StacError(f"{name}: STAC catalogue {label}: no item matches the query ({query_text}); collections in "
                        f"the catalogue: {cols}")
    return matched


def _api_error(e: Exception, timeout_s: float) -> str:
    import requests

    code = getattr(e, "status_code", None)
    if code is not None:
        return f"HTTP {code}: {str(e)[:300]}"
    if isinstance(e, requests.RequestException):
        return _http_reason(e, timeout_s)
    text = str(e)
    if "refused" in text.lower():
        return "connection refused (no server listening there?)"
    return f"{type(e).__name__}: {text[:300]}"


def _search_api(name, url, collection, bbox, dt_norm, max_items, timeout_s, query_text):
    """Run the Item Search; returns ([(item, collection id)], search endpoint URL)."""
    from pystac_client import Client

    try:
        client = Client.open(url, timeout=timeout_s)
        search = client.search(collections=[collection] if collection else None, bbox=list(bbox) if bbox else None,
                               datetime=dt_norm, max_items=max_items + 1, limit=min(max_items + 1, PAGE_LIMIT))
        items = list(search.items())
    except Exception as e:  # noqa: BLE001 - APIError, requests errors, pystac errors on bad items
        raise StacError(f"{name}: STAC API {url}: search failed: {_api_error(e, timeout_s)}") from None
    if len(items) > max_items:
        raise StacError(f"{name}: STAC API {url}: more than max_items={max_items} items match ({query_text}); "
                        "narrow the query (collection, bbox, datetime) or raise max_items")
    if not items:
        raise StacError(f"{name}: STAC API {url}: no item matches the query ({query_text})")
    return [(it, it.collection_id) for it in items], search.url


def search_stac(name: str, catalog: str, *, asset: str, collection: str | None = None, datetime: str | None = None,
                bbox: tuple[float, float, float, float] | None = None, max_items: int = 1000,
                base_dir: Path | None = None, timeout_s: float = 30) -> StacResolution:
    """Resolve a STAC query to the ordered hrefs of one raster asset.

    Parameters
    ----------
    name : str
        The config key, for messages (e.g. ``inputs.et.path.stac``); every error message starts with it.
    catalog : str
        A STAC API landing page URL (http/https; ``conformsTo`` lists STAC API - Item Search and it has a
        ``rel="search"`` link: searched through pystac-client), or a static catalogue: the path of a ``catalog.json``
        / ``collection.json`` (or of a folder holding one; relative to ``base_dir``; ``file://`` URLs too) or the
        http(s) URL of a static ``catalog.json`` (walked recursively with pystac). Any other http(s) JSON that is a
        Catalog or Collection is walked as a static catalogue.
    asset : str
        Key of the raster asset in each item's ``assets`` (e.g. ``data``).
    collection : str, optional
        Collection id to search; None: every collection.
    datetime : str, optional
        STAC datetime: an RFC 3339 date-time or a date (whole day/month/year), or an interval ``start/end`` with
        ``..`` or empty for an open end (STAC API - Item Search ``datetime`` parameter,
        https://github.com/radiantearth/stac-api-spec/tree/v1.0.0/item-search#query-parameter-table). Items whose
        ``datetime`` (or ``start_datetime``/``end_datetime`` range) overlaps it match.
    bbox : tuple of 4 float, optional
        ``(west, south, east, north)`` in WGS84 degrees; items whose bbox (or geometry bounds) intersect it match.
    max_items : int, default 1000
        More matches than this is an error (never a silent truncation).
    base_dir : Path, optional
        Folder of relative local catalogue paths (default: the current directory).
    timeout_s : float, default 30
        Timeout of each HTTP request.

    Returns
    -------
    StacResolution
        The assets newest first (``datetime``, else ``start_datetime``), ties by item id ascending: read
        first-valid-wins, the newest valid pixel wins where items overlap.

    Raises
    ------
    ConfigError
        A bad query: ``asset``/``collection`` empty, ``max_items`` not a positive integer, bad ``datetime`` syntax, a
        bbox that is not WGS84 ``[west, south, east, north]``, an unsupported URL scheme.
    StacError
        (an :class:`~gep_raster.errors.InputError`) The catalogue is not found, not JSON, not STAC, answers with an HTTP
        error (its status code is given) or refuses the connection; no item matches (the query is repeated); more than
        ``max_items`` match; a matched item lacks the asset key (its keys are listed); an asset href is relative and
        cannot be resolved, or names a local file that does not exist.
    """
    _check_args(name, asset, collection, max_items)
    bbox = _check_bbox(name, bbox)
    start, end, dt_norm = parse_datetime_query(name, datetime)
    href, is_url = _locate(name, catalog, base_dir)
    query_text = _describe_query(collection, bbox, datetime)
    filt = {"collections": [collection] if collection else None, "bbox": list(bbox) if bbox else None,
            "datetime": dt_norm}
    io = _make_io(timeout_s)
    root, landing = _open_root(name, href, io)
    api = is_url and _is_api(landing)
    if api:
        entries, endpoint = _search_api(name, href, collection, bbox, dt_norm, max_items, timeout_s, query_text)
        filt["search"] = endpoint
    else:
        entries = _walk_static(name, href, root, io, collection, bbox, start, end, max_items, query_text)
    assets = _to_assets(name, href, entries, asset)
    query = {"collection": collection, "asset": asset, "datetime": datetime, "bbox": list(bbox) if bbox else None,
             "max_items": max_items, "filter": filt}
    return StacResolution(catalog=href, api=api, query=query, assets=assets)
