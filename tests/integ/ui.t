#!/usr/bin/env python3
"""The dashboard as a browser gets it: the embedded files at / (ETag and 304, gzip and identity,
cache headers, the Content-Security-Policy, no inline script), the single-page app's client routes,
unknown assets as 404 JSON, the API under /v1 unaffected (and still guarded by the token while the
page itself is public), --ui-dir (files read live, no way out of the directory) and --no-ui."""
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui-fixture")
CSP_NEEDED = ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "object-src 'none'",
              "base-uri 'none'", "frame-ancestors 'none'"]
GZ = {"Accept-Encoding": "gzip"}
PLAIN = {"Accept-Encoding": "identity"}


def csp_ok(r):
    csp = r.header("Content-Security-Policy") or ""
    return all(d in csp for d in CSP_NEEDED) and "unsafe-inline" not in csp and "unsafe-eval" not in csp


def asset_paths(html):
    return sorted(set(re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)))


def built_without(tap, srv, page):
    """A `make UI=0` binary: one page saying so, with the same headers, at every client route."""
    tap.diag("this binary was built without its dashboard (make UI=0): checking the page that says so")
    for route in ("/s/abc", "/s/abc/chat"):
        r = srv.request("GET", route)
        tap.ok(r.status == 200 and r.body == page.body and csp_ok(r) and r.header("Cache-Control") == "no-cache",
               f"{route}: the same page, with the policy headers", repr(r))
    r = srv.request("GET", "/assets/index-1234.js")
    tap.ok(r.status == 404 and r.error_body() is not None, "no assets: 404 JSON", repr(r))


def embedded(tap, srv):
    page = srv.request("GET", "/")
    if page.status == 200 and b"built without its dashboard" in page.body:
        return built_without(tap, srv, page)
    r = srv.request("GET", "/", headers=GZ)
    tap.is_(r.status, 200, "GET / answers 200")
    tap.ok((r.header("Content-Type") or "").startswith("text/html"), "/ is HTML", r.header("Content-Type"))
    tap.is_(r.header("Content-Encoding"), "gzip", "/ comes gzip-compressed to a client that takes it")
    html = gzip.decompress(r.body).decode()
    tap.ok("<html" in html.lower() or "<!doctype html" in html.lower(), "the body inflates to an HTML page",
           html[:200])
    tap.is_(r.header("Cache-Control"), "no-cache", "index.html is always revalidated")
    tap.ok(csp_ok(r), "/ carries a strict Content-Security-Policy", r.header("Content-Security-Policy"))
    tap.is_(r.header("Referrer-Policy"), "no-referrer", "no Referer leaves the page (share tokens in URLs)")
    etag = r.header("ETag") or ""
    tap.ok(re.fullmatch(r'"[^"]+"', etag), "a strong ETag", etag)
    tap.ok("Accept-Encoding" in (r.header("Vary") or ""), "Vary: Accept-Encoding")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
    tap.ok(scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts),
           "every script of index.html is an external file (no inline script)", scripts)
    tap.ok(not re.search(r"\son[a-z]+\s*=", html, re.I), "no inline event handler in index.html")

    r304 = srv.request("GET", "/", headers={**GZ, "If-None-Match": etag})
    tap.ok(r304.status == 304 and r304.body == b"" and r304.header("ETag") == etag,
           "If-None-Match with the ETag: 304, no body, same ETag", repr(r304))
    r = srv.request("GET", "/", headers={**GZ, "If-None-Match": '"stale", W/' + etag})
    tap.is_(r.status, 304, "a list with a weak form of the ETag also gets 304")
    r = srv.request("GET", "/", headers={**GZ, "If-None-Match": '"stale"'})
    tap.is_(r.status, 200, "a stale ETag gets the page")

    plain = srv.request("GET", "/", headers=PLAIN)
    tap.ok(plain.status == 200 and plain.header("Content-Encoding") is None and plain.body.decode() == html,
           "a client without gzip gets the same page uncompressed", repr(plain))
    tap.ok(plain.header("ETag") not in (None, etag), "the identity form has an ETag of its own",
           (plain.header("ETag"), etag))
    r = srv.request("HEAD", "/", headers=PLAIN)
    tap.ok(r.status == 200 and r.body == b"" and r.header("Content-Length") == str(len(plain.body)),
           "HEAD /: the length, no body", repr(r))

    assets = asset_paths(html)
    tap.ok(assets, "index.html loads hashed files from /assets/", html[:400])
    for path in assets:
        r = srv.request("GET", path, headers=GZ)
        tap.ok(r.status == 200 and r.header("Content-Encoding") == "gzip", f"{path}: 200, gzip", repr(r))
        tap.is_(r.header("Cache-Control"), "public, max-age=31536000, immutable", f"{path}: cached for a year")
        ct = r.header("Content-Type") or ""
        want = "text/javascript" if path.endswith(".js") else "text/css" if path.endswith(".css") else ""
        tap.ok(ct.startswith(want), f"{path}: Content-Type {ct}")
        p = srv.request("GET", path, headers=PLAIN)
        tap.ok(p.status == 200 and gzip.decompress(r.body) == p.body, f"{path}: both forms hold the same bytes")
        r = srv.request("GET", path, headers={**GZ, "If-None-Match": r.header("ETag")})
        tap.is_(r.status, 304, f"{path}: 304 on its ETag")

    for route in ("/s/abc123", "/s/abc123/chat", "/s/abc123?share=tok", "/some/client/route/"):
        r = srv.request("GET", route, headers=PLAIN)
        tap.ok(r.status == 200 and r.body.decode() == html and r.header("Cache-Control") == "no-cache"
               and csp_ok(r), f"client route {route}: index.html (SPA fallback)", repr(r))
    r = srv.request("GET", "/assets/index-doesnotexist.js")
    tap.ok(r.status == 404 and r.error_body() is not None, "an unknown /assets/ file: 404 JSON", repr(r))
    for path in ("/%2e%2e/%2e%2e/etc/passwd", "/assets/..%2f..%2fetc%2fpasswd", "/a%00b"):
        r = srv.request("GET", path)
        tap.ok(r.status == 400 and r.error_body() is not None, f"{path}: 400 JSON", repr(r))
    r = srv.request("POST", "/", b"x")
    tap.ok(r.status == 405 and r.error_body() is not None, "POST /: 405 JSON", repr(r))



def api_unaffected(tap, srv):
    for method, path in (("GET", "/v1/nope"), ("GET", "/v1"), ("POST", "/v1"), ("GET", "/v1/stream")):
        r = srv.request(method, path)
        tap.ok(r.status == 404 and r.error_body() is not None and "html" not in (r.header("Content-Type") or ""),
               f"{method} {path}: 404 JSON, not the page", repr(r))
    tap.is_(srv.request("GET", "/v1/health").status, 200, "GET /v1/health: 200")
    r = srv.request("POST", "/v1/sessions", b'{"agent":"none"}', {"Content-Type": "application/json"})
    tap.is_(r.status, 201, "POST /v1/sessions still creates a session")


def token_server(tap):
    srv = Server(token="s3cret")
    srv.start()
    r = srv.request("GET", "/s/abc", auth=False)
    tap.ok(r.status == 200 and "text/html" in (r.header("Content-Type") or ""),
           "with --token the page itself is served without it (it asks for the token)", repr(r))
    for path in ("/v1/sessions", "/v1/nope"):
        r = srv.request("GET", path, auth=False)
        tap.is_(r.status, 401, f"with --token, GET {path} without it: 401")
    tap.is_(srv.request("GET", "/v1/nope").status, 404, "with the token, an unknown API path: 404")
    tap.check_clean_exit(srv, "token server stops cleanly")


def ui_dir(tap):
    root = tempfile.mkdtemp(prefix="agentd-ui-")
    try:
        dist = os.path.join(root, "dist")
        shutil.copytree(FIXTURE, dist)
        with open(os.path.join(root, "secret.txt"), "w") as f:
            f.write("SECRET-OUTSIDE-THE-UI-DIR")
        os.symlink(os.path.join(root, "secret.txt"), os.path.join(dist, "assets", "link.js"))
        srv = Server(args=["--ui-dir", dist])
        srv.start()
        r = srv.request("GET", "/", headers=GZ)
        with open(os.path.join(dist, "index.html"), "rb") as f:
            tap.ok(r.status == 200 and r.body == f.read(), "--ui-dir serves the directory's index.html", repr(r))
        first = r.header("ETag")
        with open(os.path.join(dist, "index.html"), "a") as f:
            f.write("<!-- rebuilt -->\n")
        r = srv.request("GET", "/s/x/chat")
        tap.ok(r.status == 200 and b"rebuilt" in r.body and r.header("ETag") != first,
               "a rebuilt file is served at once with a new ETag (vite build --watch)", repr(r))
        r = srv.request("GET", "/assets/index-3f9a1c.js")
        tap.ok(r.status == 200 and b"fixture script ran" in r.body and
               r.header("Cache-Control") == "public, max-age=31536000, immutable", "--ui-dir serves assets", repr(r))
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt",
                     "/assets/%2e%2e/%2e%2e/secret.txt", "/assets/link.js", "//secret.txt", "/assets/../../secret.txt"):
            r = srv.request("GET", path)
            tap.ok(b"SECRET" not in r.body and r.status in (200, 400, 404) and
                   (r.status != 200 or r.header("Content-Type", "").startswith("text/html")),
                   f"--ui-dir: {path} does not leave the directory ({r.status})", repr(r))
        raw, _ = srv.raw(b"GET /../../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        tap.ok(b"SECRET" not in raw, "--ui-dir: a raw ../ request does not leave the directory", raw[:200])
        tap.check_clean_exit(srv, "--ui-dir server stops cleanly")

        bad = subprocess.run([os.environ["AGENTD_BIN"], "serve", "--listen", "127.0.0.1:0", "--data",
                              os.path.join(root, "data"), "--ui-dir", os.path.join(root, "nowhere")],
                             capture_output=True, timeout=20)
        tap.ok(bad.returncode != 0 and b"--ui-dir" in bad.stderr, "a missing --ui-dir stops the server with a reason",
               bad.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def no_ui(tap):
    srv = Server(args=["--no-ui"])
    srv.start()
    for path in ("/", "/s/abc", "/assets/index-3f9a1c.js"):
        r = srv.request("GET", path)
        tap.ok(r.status == 404 and r.error_body() is not None, f"--no-ui: GET {path} is 404 JSON", repr(r))
    tap.is_(srv.request("GET", "/v1/health").status, 200, "--no-ui: the API answers")
    tap.check_clean_exit(srv, "--no-ui server stops cleanly")


def main(tap):
    srv = Server()
    srv.start()
    embedded(tap, srv)
    api_unaffected(tap, srv)
    tap.check_clean_exit(srv)
    token_server(tap)
    ui_dir(tap)
    no_ui(tap)


run_test(main)
