"""A local HTTP server for the remote-input tests: serves a folder with HEAD and single byte-range GET (206), as
object stores do, and counts the bytes sent per path.

* ``/<path>``: the file under ``root``, ``ETag`` (sha256 prefix) and ``Last-Modified`` headers;
* ``/truncated/<path>``: the first half of the file only, announced with its full length (a transfer cut short:
  the connection closes early);
* anything else: 404.

Used from tests as ``with RangeServer(root) as srv: srv.url("climate/et_annual.tif")``; no internet needed.
The server runs in a child process: pyogrio holds the GIL while GDAL reads a GeoPackage through /vsicurl/, so a
server thread in the test's own process could not answer (the read hangs). ``/__sent__/<path>`` answers the
number of bytes sent for ``<path>``.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    server_version = "gep-test-range/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _target(self):
        rel = self.path.split("?", 1)[0].lstrip("/")
        truncated = rel.startswith("truncated/")
        if truncated:
            rel = rel[len("truncated/"):]
        p = (self.server.root / rel).resolve()
        if self.server.root not in p.parents or not p.is_file():
            return None, False
        return p, truncated

    def _headers(self, p: Path, length: int, status: int = 200, extra: dict | None = None):
        data_sha = hashlib.sha256(p.read_bytes()).hexdigest()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{data_sha[:16]}"')
        self.send_header("Last-Modified", email.utils.formatdate(p.stat().st_mtime, usegmt=True))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def do_HEAD(self):
        p, _ = self._target()
        if p is None:
            self.send_error(404)
            return
        self._headers(p, p.stat().st_size)

    def do_GET(self):
        if self.path.startswith("/__sent__/"):
            rel = self.path[len("/__sent__/"):]
            with self.server.lock:
                n = sum(v for k, v in self.server.sent.items() if k.split("?", 1)[0].lstrip("/") == rel)
            body = json.dumps(n).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        p, truncated = self._target()
        if p is None:
            self.send_error(404)
            return
        data = p.read_bytes()
        size = len(data)
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            if start >= size:
                self.send_error(416)
                return
            body = data[start:end + 1]
            self._headers(p, len(body), 206, {"Content-Range": f"bytes {start}-{end}/{size}"})
        else:
            start, body = 0, data
            self._headers(p, size)
        if truncated:  # send only what lies in the first half of the file, then close the connection
            body = body[:max(0, size // 2 - start)]
            self.close_connection = True
        self.wfile.write(body)
        with self.server.lock:
            self.server.sent[self.path] += len(body)


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released): a refused connection."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve(root: str) -> None:
    """Serve ``root`` on a free port of 127.0.0.1; print the port, then serve until killed."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.root = Path(root).resolve()
    httpd.sent = Counter()
    httpd.lock = threading.Lock()
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


class RangeServer:
    """Context manager: the server of this module in a child process, serving ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.proc = None
        self.port = None

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel.lstrip('/')}"

    def bytes_sent(self, rel: str) -> int:
        with urllib.request.urlopen(self.url(f"__sent__/{rel.lstrip('/')}"), timeout=10) as r:
            return int(json.loads(r.read()))

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.root)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


if __name__ == "__main__":
    serve(sys.argv[1])
