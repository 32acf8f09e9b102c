"""What the tests of sessions on several nodes (pg_placement.t, pg_session_feed.t, pg_session_sweep.t)
read alike: the shards a node holds now, whether a node lists another live, and the `sessions` feed
materialized by key."""
import json

from cluster import psql


def held_live(pg, url):
    """The shards node url holds now (a live lease; a released or expired row is nobody's)."""
    rc, out = psql(pg, f"SELECT shard FROM agentd_shards WHERE node = '{url}' AND expires_at > now() ORDER BY shard")
    return {int(x) for x in out.split()} if rc == 0 else set()


def live_on(srv, url):
    """Does srv's GET /v1/nodes list node url live, holding shards (placement may pick it)?"""
    r = srv.request("GET", "/v1/nodes")
    return r.status == 200 and any(n["node"] == url and n.get("state") == "live" and n.get("shards")
                                   for n in json.loads(r.body)["nodes"])


def feed(srv):
    """The `sessions` feed through srv: ({id: value} materialized by key, {id: inserts})."""
    items, _ = srv.read_json("/v1/stream/sessions")
    out, inserts = {}, {}
    for m in items or []:
        op, key = m.get("headers", {}).get("operation"), m.get("key")
        if op == "delete":
            out.pop(key, None)
        else:
            out[key] = m.get("value")
        if op == "insert":
            inserts[key] = inserts.get(key, 0) + 1
    return out, inserts
