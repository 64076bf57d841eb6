"""The report's PDF: the HTML printed by a headless Chromium (its own print engine, A4 from the CSS ``@page``).

The browser is looked for as ``$GEP_CHROMIUM``, ``/usr/bin/chromium``, then ``chromium``, ``chromium-browser``,
``google-chrome`` on the PATH. It runs with no network activity of its own (background networking, component
updates and sync off), no sandbox (it may run as root in a container), a throw-away profile folder, and is given
the HTML as a ``file://`` URL; the HTML loads nothing (every image is a data URI), so the PDF needs no network.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

__all__ = ["find_chromium", "print_pdf", "cjk_fonts", "CHROMIUM_FLAGS"]

#: flags of the headless print (no network of the browser's own, no GPU, no first-run UI)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions",
                  "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw")


def find_chromium() -> str | None:
    """Path of a Chromium executable (see the module docstring for the order), or None."""
    for c in (os.environ.get("GEP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def cjk_fonts() -> list[str] | None:
    """Families of the installed fonts that cover Chinese (``fc-list :lang=zh family``); None when fontconfig's
    ``fc-list`` is not there. Without one, a browser draws Chinese text as boxes."""
    exe = shutil.which("fc-list")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted({line.split(",")[0].strip() for line in out.splitlines() if line.strip()})


def print_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike, *, timeout_s: float = 180.0) -> dict:
    """Print an HTML file to PDF with headless Chromium, written atomically.

    Parameters
    ----------
    html_path : path-like
        The HTML file (opened as ``file://``).
    pdf_path : path-like
        The PDF to write (a temporary file in its folder, renamed when complete and starting with ``%PDF``).
    timeout_s : float, default 180
        Seconds the browser may take.

    Returns
    -------
    dict
        ``written`` (bool), ``browser`` (path or None), ``browser_version``, ``reason`` (why no PDF: no
        browser, timeout, exit status and the end of its stderr, or no PDF produced).

    Notes
    -----
    Never raises for a browser problem: the report is complete without its PDF, and the reason is recorded.
    """
    from ..outputs.io_write import atomic_path

    exe = find_chromium()
    info = {"written": False, "browser": exe, "browser_version": None, "reason": None}
    if exe is None:
        info["reason"] = ("no Chromium found ($GEP_CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, "
                          "google-chrome); install Debian's chromium or give --no-pdf")
        return info
    info["browser_version"] = _version(exe)
    url = Path(html_path).resolve().as_uri()
    final = Path(pdf_path)
    try:
        with tempfile.TemporaryDirectory(prefix="gep-chromium-") as profile, \
                atomic_path(final, suffix=".pdf") as tmp:
            _run_print(exe, profile, tmp, url, timeout_s, info)
    except _NoPdf as exc:
        return exc.info
    info["written"] = True
    return info


def _run_print(exe: str, profile: str, tmp: Path, url: str, timeout_s: float, info: dict) -> None:
    """One headless print of ``url`` to ``tmp``; raises _NoPdf (with ``info["reason"]`` set) when no PDF came."""
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={tmp}", url]
    try:  # own process group: a timeout ends the browser's helper processes too
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "HOME": profile}, start_new_session=True)
    except OSError as exc:
        info["reason"] = f"{exe} cannot be started ({exc})"
        raise _NoPdf(info) from None
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        info["reason"] = f"{exe} did not finish printing within {timeout_s:g} s"
        raise _NoPdf(info) from None
    res = subprocess.CompletedProcess(cmd, proc.returncode, None, err)
    ok = Path(tmp).is_file() and Path(tmp).read_bytes()[:4] == b"%PDF"
    if res.returncode != 0 or not ok:
        tail = " ".join((res.stderr or "").strip().splitlines()[-3:])
        info["reason"] = f"{exe} exited with status {res.returncode} and no PDF ({tail[-400:]})"
        raise _NoPdf(info)


class _NoPdf(Exception):
    """Aborts the atomic write (the temporary file is removed) and carries the reason."""

    def __init__(self, info: dict):
        super().__init__(info["reason"])
        self.info = info


def _version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[-1] if out else None
