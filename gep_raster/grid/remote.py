"""Remote and virtual input paths: URLs and GDAL virtual file systems, read by window like local files.

An input path of the run configuration may be

* a URL: ``https://host/dem.tif`` and ``http://...`` (read through GDAL's ``/vsicurl/``), ``s3://bucket/key``
  (``/vsis3/``), ``gs://bucket/key`` (``/vsigs/``), ``az://container/blob`` (``/vsiaz/``);
* a GDAL virtual path as GDAL writes it: ``/vsicurl/https://...``, ``/vsis3/...``, ``/vsizip/archive.zip/a.tif``,
  ``/vsizip//vsicurl/https://.../a.zip/a.tif`` ... (GDAL's "GDAL Virtual File Systems" page).

Such a path is kept verbatim as a :class:`RemotePath` (a ``str``): never resolved against the config folder and
never normalised (``pathlib.Path`` and ``os.path.normpath`` collapse the ``//`` of ``https://``). GDAL reads
Cloud-Optimized GeoTIFFs by HTTP range requests, so a window of the grid fetches only the tiles it covers.

HTTP behaviour (retries, time-outs, the ``/vsicurl/`` cache) is set from the config's ``processing.remote``
section by :func:`apply_gdal_options`, as GDAL configuration options through the process environment (so every
thread and every worker process started afterwards sees them). Credentials (``AWS_SECRET_ACCESS_KEY``,
``GDAL_HTTP_USERPWD``, ``GS_SECRET_ACCESS_KEY``, bearer tokens...) are read by GDAL from the environment; they are
refused in the config and never written to the manifest.

:func:`remote_record` is the manifest's record of a remote input, from one request: URL, GDAL path, size, ``ETag``
and ``Last-Modified`` and the SHA-256 of the bytes (a streamed GET), or with ``processing.remote.checksum: headers``
the headers of a HEAD only. :func:`explain_open_failure` turns a failed open into a message that
names the URL and the HTTP status or the connection error.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

__all__ = ["RemotePath", "is_remote_path", "to_gdal_path", "http_url", "apply_gdal_options", "gdal_options",
           "remote_record", "explain_open_failure", "CREDENTIAL_OPTIONS"]

#: a URL (``scheme://...``) or a GDAL virtual file system path (``/vsicurl/...``, ``/vsizip/...``)
_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|/vsi[a-z0-9_]+/)")

#: URL scheme -> GDAL virtual file system prefix
_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/",
            "abfs": "/vsiaz/", "oss": "/vsioss/"}

#: GDAL options that carry secrets: refused in ``processing.remote.gdal_options`` (take them from the environment).
CREDENTIAL_OPTIONS = re.compile(r"(SECRET|PASSWORD|USERPWD|TOKEN|SESSION|ACCESS_KEY|SAS|CREDENTIAL|AUTH|BEARER)",
                                re.IGNORECASE)


def is_remote_path(p) -> bool:
    """True for a URL (``scheme://...``, except ``file://``) or a GDAL virtual path (``/vsicurl/...``).

    Parameters
    ----------
    p : str or path-like
        A path as given in the config.

    Returns
    -------
    bool
    """
    s = os.fspath(p)
    return bool(_REMOTE.match(s)) and not s.lower().startswith("file://")


def to_gdal_path(url: str) -> str:
    """The GDAL form of a URL: ``https://h/a.tif`` -> ``/vsicurl/https://h/a.tif``, ``s3://b/k`` -> ``/vsis3/b/k``,
    ``gs://b/k`` -> ``/vsigs/b/k``, ``az://c/b`` -> ``/vsiaz/c/b``; a ``/vsi.../`` path unchanged.

    Raises
    ------
    ValueError
        A URL scheme GDAL cannot read (e.g. ``ftp://``).
    """
    if url.startswith("/vsi"):
        return url
    scheme, sep, rest = url.partition("://")
    prefix = _SCHEMES.get(scheme.lower())
    if not sep or prefix is None:
        raise ValueError(f"{url}: URL scheme {scheme!r} is not supported (use one of "
                         f"{sorted(_SCHEMES)} or a GDAL /vsi.../ path)")
    return prefix + (url if prefix == "/vsicurl/" else rest)


def http_url(gdal_path: str) -> str | None:
    """The http(s) URL behind a GDAL path (``/vsicurl/URL``, also inside ``/vsizip/`` or ``/vsigzip/``), or None.

    A ``/vsicurl?url=...&...`` path gives its ``url`` parameter."""
    m = re.search(r"/vsicurl(?:_streaming)?/(https?://.+)$", gdal_path)
    if m:
        url = m.group(1)
        if gdal_path.startswith("/vsizip/") or gdal_path.startswith("/vsitar/"):
            # /vsizip//vsicurl/https://h/a.zip/inner.tif: the archive is the URL up to the archive's extension
            a = re.match(r"(.+?\.(?:zip|tar|tgz|tar\.gz))(?:/|$)", url, re.IGNORECASE)
            url = a.group(1) if a else url
        return url
    m = re.match(r"/vsicurl\?(.+)$", gdal_path)
    if m:
        q = urllib.parse.parse_qs(m.group(1))
        return q.get("url", [None])[0]
    return None


class RemotePath(str):
    """A remote or virtual input path, in GDAL form (``str``: rasterio, pyogrio and GDAL open it as given).

    It answers the few questions the engine asks of a local :class:`pathlib.Path` (``name``, ``suffix``,
    ``exists``, ``is_file``, ``is_dir``, ``resolve``) without touching the network; :attr:`given` is the path as
    written in the config (``https://...``), used in messages and in the manifest.

    Raises
    ------
    ValueError
        An unsupported URL scheme (:func:`to_gdal_path`).
    """

    given: str

    def __new__(cls, given: str):
        s = os.fspath(given)
        obj = super().__new__(cls, to_gdal_path(s))
        obj.given = s
        return obj

    def __reduce__(self):  # picklable for dask workers
        return (RemotePath, (self.given,))

    @property
    def name(self) -> str:
        tail = str(self).split("?", 1)[0].rstrip("/")
        return tail.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        n = self.name
        return n[n.rfind("."):] if "." in n else ""

    def exists(self) -> bool:  # checked by opening it (the open names the HTTP status when it fails)
        return True

    def is_file(self) -> bool:
        return True

    def is_dir(self) -> bool:
        return False

    def is_absolute(self) -> bool:
        return True

    def resolve(self) -> "RemotePath":
        return self

    def expanduser(self) -> "RemotePath":
        return self


# -- GDAL options -------------------------------------------------------------------------------------------------
def gdal_options(remote) -> dict[str, str]:
    """GDAL configuration options of a ``processing.remote`` section (:class:`gep_raster.config.RemoteOptions`).

    Returns
    -------
    dict of str to str
        ``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY`` (s), ``GDAL_HTTP_TIMEOUT`` (s),
        ``GDAL_HTTP_CONNECTTIMEOUT`` (s), ``CPL_VSIL_CURL_CACHE_SIZE`` (bytes), ``VSI_CACHE``,
        ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (no directory listing of remote folders on open),
        ``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES``, ``GDAL_HTTP_MULTIPLEX=YES``, then ``remote.gdal_options``.
        Names from GDAL's "Configuration options" page (``/vsicurl/`` section).
    """
    opts = {
        "GDAL_HTTP_MAX_RETRY": str(remote.max_retry),
        "GDAL_HTTP_RETRY_DELAY": f"{remote.retry_delay_s:g}",
        "GDAL_HTTP_TIMEOUT": str(int(remote.timeout_s)),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(remote.connect_timeout_s)),
        "CPL_VSIL_CURL_CACHE_SIZE": str(int(remote.cache_mb) * 1024 * 1024),
        "VSI_CACHE": "TRUE" if remote.cache_mb > 0 else "FALSE",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
    }
    opts.update({str(k): str(v) for k, v in (remote.gdal_options or {}).items()})
    return opts


def apply_gdal_options(remote, environ: Mapping | None = None) -> dict[str, str]:
    """Set the GDAL options of ``processing.remote`` in the process environment (GDAL reads configuration options
    from it when they are not set otherwise), for this process and the worker processes it starts.

    An option the user already set in the environment is kept unless the config sets it explicitly (a key given
    in ``processing.remote`` or in ``processing.remote.gdal_options``).

    Parameters
    ----------
    remote : RemoteOptions
    environ : mapping, optional
        The environment to change (``os.environ``).

    Returns
    -------
    dict
        The options in force (for the manifest; credentials are never among them).
    """
    env = os.environ if environ is None else environ
    explicit = set(getattr(remote, "model_fields_set", set()))
    field_of = {"GDAL_HTTP_MAX_RETRY": "max_retry", "GDAL_HTTP_RETRY_DELAY": "retry_delay_s",
                "GDAL_HTTP_TIMEOUT": "timeout_s", "GDAL_HTTP_CONNECTTIMEOUT": "connect_timeout_s",
                "CPL_VSIL_CURL_CACHE_SIZE": "cache_mb", "VSI_CACHE": "cache_mb"}
    user_keys = set((remote.gdal_options or {}).keys())
    in_force = {}
    for key, value in gdal_options(remote).items():
        if key in env and key not in user_keys and field_of.get(key) not in explicit:
            in_force[key] = env[key]
            continue
        env[key] = value
        in_force[key] = value
    return in_force


# -- manifest records and failure messages -------------------------------------------------------------------------
def _request(url: str, method: str, timeout: float, headers: dict | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only, checked by the caller)


def _http_status(url: str, timeout: float) -> str | None:
    """A short description of what the server answers for ``url`` (``HTTP 404 Not Found``, ``connection
    refused``...), or None when it answers 200/206."""
    try:
        with _request(url, "HEAD", timeout):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code in (405, 501):  # HEAD not allowed: ask for one byte
            try:
                with _request(url, "GET", timeout, {"Range": "bytes=0-0"}):
                    return None
            except urllib.error.HTTPError as exc2:
                return f"HTTP {exc2.code} {exc2.reason}"
            except (urllib.error.URLError, OSError) as exc2:
                return _reason(exc2)
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return _reason(exc)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    text = str(reason)
    if isinstance(reason, ConnectionRefusedError) or "refused" in text.lower():
        return "connection refused"
    if "timed out" in text.lower():
        return "connection timed out"
    return f"cannot connect ({text})"


def explain_open_failure(path: str, gdal_message: str, timeout: float = 10.0) -> str:
    """Why a remote raster or vector could not be opened, for an error message.

    Parameters
    ----------
    path : str
        The GDAL path (a :class:`RemotePath` gives its URL as written too).
    gdal_message : str
        GDAL's (rasterio's, pyogrio's) error text.
    timeout : float
        Seconds for the HTTP probe.

    Returns
    -------
    str
        ``"<url>: HTTP 404 Not Found"``, ``"<url>: connection refused"``, or ``"<url>: <GDAL message>"`` when the
        server answers (the file is there but GDAL cannot read it: not a raster, truncated...) or the path is not
        http(s). Never raises.
    """
    given = getattr(path, "given", str(path))
    url = http_url(str(path))
    status = _http_status(url, timeout) if url else None
    if status:
        return f"{given}: {status}" + (f" (GDAL: {gdal_message})" if gdal_message else "")
    return f"{given}: {gdal_message}"


def remote_record(path: str, *, checksum: bool = True, timeout: float = 60.0) -> dict:
    """The manifest record of a remote input.

    Parameters
    ----------
    path : RemotePath or str
        GDAL path of the input.
    checksum : bool
        Stream the file once (http/https) and record the SHA-256 of its bytes: equal to the ``sha256`` of the same
        file read locally. False (``processing.remote.checksum: headers``): record the headers only.
    timeout : float
        Seconds per HTTP request.

    Returns
    -------
    dict
        ``url`` (as written), ``gdal_path``, ``bytes`` (Content-Length or streamed size), ``etag``,
        ``last_modified``, ``sha256`` (None when not computed), ``checksum`` (``"sha256 of the bytes"``,
        ``"headers only"`` or why none could be taken, e.g. for ``s3://`` where GDAL signs the requests).

    Raises
    ------
    InputError
        The server answers with an error status or cannot be reached (the message names the URL).
    """
    from ..errors import InputError

    given = getattr(path, "given", str(path))
    rec = {"url": given, "gdal_path": str(path), "bytes": None, "etag": None, "last_modified": None,
           "sha256": None, "checksum": None}
    url = http_url(str(path))
    if url is None:
        rec["checksum"] = ("not taken: GDAL signs or resolves the requests of this file system itself; the run "
                           "reads it through GDAL only")
        return rec
    # one request: HEAD for the headers only, GET (streamed) for the headers and the sha256 of the bytes
    digest, n = hashlib.sha256(), 0
    try:
        with _request(url, "GET" if checksum else "HEAD", timeout) as resp:
            h = resp.headers
            rec["bytes"] = int(h["Content-Length"]) if h.get("Content-Length", "").isdigit() else None
            rec["etag"], rec["last_modified"] = h.get("ETag"), h.get("Last-Modified")
            while checksum:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                digest.update(chunk)
                n += len(chunk)
    except urllib.error.HTTPError as exc:
        raise InputError(f"{given}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:  # refused, time-out
        raise InputError(f"{given}: {_reason(exc)}") from None
    except http.client.HTTPException as exc:  # the connection closed before Content-Length bytes (IncompleteRead)
        raise InputError(f"{given}: transfer cut short ({type(exc).__name__}) while reading it for its checksum") \
            from None
    if not checksum:
        rec["checksum"] = "headers only (processing.remote.checksum: headers)"
        return rec
    if rec["bytes"] is not None and n != rec["bytes"]:
        raise InputError(f"{given}: the server announced {rec['bytes']} bytes but sent {n} (truncated transfer)")
    rec["bytes"], rec["sha256"] = n, digest.hexdigest()
    rec["checksum"] = "sha256 of the bytes"
    return rec
