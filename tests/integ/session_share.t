#!/usr/bin/env python3
"""Read-only share links: on a server with --token, a share token reads one session (its streams
and its description, by header or ?share=) and nothing else, cannot write, is revocable, and both
the token and its revocation survive a restart."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test  # noqa: E402


def main(tap):
    srv = Server(token="s3cret")
    srv.start()

    def api(method, path, body=None, auth=True, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        h = dict(headers or {})
        if data:
            h["Content-Type"] = "application/json"
        r = srv.request(method, path, data, h, auth=auth)
        try:
            doc = json.loads(r.body) if r.body else None
        except ValueError:
            doc = None
        return r.status, doc

    st, s1 = api("POST", "/v1/sessions", {"agent": "none"})
    st, s2 = api("POST", "/v1/sessions", {"agent": "none"})
    sid, other = s1["id"], s2["id"]
    api("POST", f"/v1/sessions/{sid}/runtimes/bash/exec", {"code": "echo shared"})
    st, share = api("POST", f"/v1/sessions/{sid}/share")
    tap.is_(st, 201, "share link created")
    tok = share["token"]
    tap.ok(len(tok) >= 32 and tok in share["urls"]["transcript"], "the link carries an unguessable token", share)
    bearer = {"Authorization": f"Bearer {tok}"}

    st, _ = api("GET", f"/v1/stream/sessions/{sid}/transcript?offset=-1", auth=False)
    tap.is_(st, 401, "without any token the transcript is refused")
    st, doc = api("GET", f"/v1/stream/sessions/{sid}/transcript?offset=-1&share={tok}", auth=False)
    tap.ok(st == 200 and isinstance(doc, list), "?share= reads the transcript", doc)
    st, doc = api("GET", f"/v1/sessions/{sid}", auth=False, headers=bearer)
    tap.ok(st == 200 and doc["id"] == sid, "the bearer share token reads the session")
    st, doc = api("POST", f"/v1/sessions/{sid}/runtimes/bash/exec", {"code": "id"}, auth=False, headers=bearer)
    tap.ok(st == 403 and ((doc or {}).get("error") or {}).get("code") == "forbidden",
           "a share token cannot run code: 403, a read-only link", f"{st} {doc!r}")
    st, _ = api("POST", f"/v1/stream/sessions/{sid}/transcript", [{"x": 1}], auth=False, headers=bearer)
    tap.is_(st, 401, "a share token cannot append")
    st, _ = api("GET", f"/v1/stream/sessions/{other}/transcript?offset=-1", auth=False, headers=bearer)
    tap.is_(st, 401, "a share token does not open another session")
    st, _ = api("GET", "/v1/sessions", auth=False, headers=bearer)
    tap.is_(st, 401, "a share token does not list sessions")
    st, _ = api("GET", f"/v1/sessions/{sid}/share", auth=False, headers=bearer)
    tap.is_(st, 401, "a share token does not list share tokens")

    srv.stop()
    srv.start()
    st, _ = api("GET", f"/v1/stream/sessions/{sid}/transcript?offset=-1&share={tok}", auth=False)
    tap.is_(st, 200, "the share token survives a restart")
    st, _ = api("DELETE", f"/v1/sessions/{sid}/share/{tok}")
    tap.is_(st, 204, "revoked")
    st, _ = api("GET", f"/v1/stream/sessions/{sid}/transcript?offset=-1&share={tok}", auth=False)
    tap.is_(st, 401, "a revoked token reads nothing")
    srv.stop()
    srv.start()
    st, _ = api("GET", f"/v1/stream/sessions/{sid}/transcript?offset=-1&share={tok}", auth=False)
    tap.is_(st, 401, "the revocation survives a restart")
    st, doc = api("DELETE", f"/v1/sessions/{sid}/share/{tok}")
    tap.ok(st == 404 and "error" in doc, "revoking an unknown token is a 404 JSON error", doc)
    tap.check_clean_exit(srv)


run_test(main)
