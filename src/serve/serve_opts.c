/* serve_opts — `agentd serve`'s options: the table (flags, AGENTD_<NAME>, --config) and the checks
 * it cannot make. See serve_opts.h. */
#include "serve/serve_opts.h"
#include "core/core.h"
#include "core/opt.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define O(f) offsetof(struct serve_opts, f)
static const struct opt_def serve__opts[] = {
    {"listen", OPT_STRING, "127.0.0.1:4437", 0, 0, NULL,
     "address:port to listen on (port 0 picks a free one)", O(listen)},
    {"data", OPT_STRING, "./data", 0, 0, NULL, "data directory (the SQLite store lives here)", O(data)},
    {"store", OPT_STRING, "sqlite", 0, 0, NULL,
     "where streams are stored: sqlite (in --data) or a PostgreSQL connection string (postgres://...)",
     O(store)},
    {"node-url", OPT_STRING, NULL, 0, 0, NULL,
     "PostgreSQL store: the URL clients reach this node at; also its name among the nodes (default: "
     "host name and data dir)",
     O(node_url)},
    {"public-url", OPT_STRING, NULL, 0, 0, NULL,
     "the URL clients reach the service at, when it is not this node's own (a load balancer in front of "
     "several nodes): named in webhook callback and JWKS URLs (default: the listen URL)",
     O(public_url)},
    {"lease-ms", OPT_INT, "5000", 200, 3600000, NULL,
     "PostgreSQL store: how long the write lease outlives this node's last heartbeat (a follower takes "
     "over after that)",
     O(lease_ms)},
    {"token", OPT_STRING, NULL, 0, 0, NULL, "bearer token every request must carry; required off loopback",
     O(token)},
    {"durability", OPT_ENUM, "fsync", 0, 0, "fsync|os",
     "acknowledge appends after fsync, or after the OS has them", O(durability)},
    {"long-poll-timeout", OPT_INT, "20000", 10, 3600000, NULL,
     "milliseconds a long-poll waits before answering 204", O(long_poll_timeout)},
    {"max-body", OPT_INT, "16777216", 1024, 1LL << 31, NULL, "largest request body in bytes (413 above)",
     O(max_body)},
    {"io-timeout", OPT_INT, "30000", 100, 3600000, NULL,
     "milliseconds before a slow or idle client is dropped", O(io_timeout)},
    {"sse-max", OPT_INT, "60000", 1000, 86400000, NULL,
     "milliseconds before an SSE connection is closed for reconnect", O(sse_max)},
    {"max-queued", OPT_INT, "4194304", 65536, 1LL << 30, NULL,
     "bytes a live reader may have queued before it is cut off", O(max_queued)},
    {"max-held", OPT_INT, "67108864", 0, 1LL << 40, NULL,
     "PostgreSQL store: bytes of request bodies a follower holds at once while it waits for a new lease "
     "holder (past that: 503 owner_unavailable at once)",
     O(max_held)},
    {"stream-cache", OPT_INT, "33554432", 0, 1LL << 40, NULL,
     "bytes of memory for streams' newest records, which live readers read without a store query "
     "(0: none)",
     O(stream_cache)},
    {"shards", OPT_INT, "1", 1, STORE_SHARDS, NULL,
     "for tests only, SQLite store: spread the streams over this many shards in memory (the sharding "
     "plan's bookkeeping with every shard held); 1 is the setting for use",
     O(shards)},
    {"shard-policy", OPT_ENUM, "auto", 0, 0, "auto|balance|all",
     "PostgreSQL store: how the nodes share the 64 shards of the streams: auto (balance on PostgreSQL; "
     "SQLite has one shard), balance (each node takes its share, ceil(shards / live nodes), serves those "
     "shards' streams and runs their sessions, a new one on the node with the fewest live agents or the "
     "body's \"node\"; a node started later gets its share through the hand-off) or all (the node that "
     "starts first holds every shard and the others forward to it: one writer and standbys)",
     O(shard_policy)},
    {"runtime-idle", OPT_INT, "1800000", 1000, 1LL << 40, NULL,
     "milliseconds before an unused runtime is stopped", O(runtime_idle)},
    {"runtime-output-limit", OPT_INT, "1048576", 1024, 1LL << 30, NULL,
     "bytes of stdout and of stderr kept per runtime call", O(runtime_output_limit)},
    {"runtime-spin", OPT_INT, "250", 0, 100000, NULL,
     "microseconds the loop polls instead of sleeping after sending a runtime a call (0: never)",
     O(runtime_spin)},
    {"agent-idle", OPT_INT, "600000", 0, 1LL << 40, NULL,
     "milliseconds a warm agent's process (Claude Code, jsonl programs that say so) waits for the next "
     "message before it is stopped (0: stop it after each run)",
     O(agent_idle)},
    {"log-level", OPT_ENUM, "info", 0, 0, "debug|info|warn|error", "least severe log level written to stderr",
     O(log_level)},
    {"ui-dir", OPT_STRING, NULL, 0, 0, NULL,
     "serve the dashboard from this directory (e.g. web/dist under vite build --watch) instead of the "
     "embedded copy",
     O(ui_dir)},
    {"no-ui", OPT_BOOL, "0", 0, 0, NULL, "serve no dashboard: paths outside /v1/ get 404", O(no_ui)},
};
#undef O

static const char serve__usage[] =
    "usage: agentd serve [--listen ADDR:PORT] [--data DIR] [--store sqlite|postgres://...] [--token T]\n"
    "                    [--durability fsync|os]\n"
    "                    [--long-poll-timeout MS] [--ui-dir DIR | --no-ui] [--config FILE]";

static int serve__is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcmp(host, "localhost"))
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* Splits "host:port" or "[v6]:port". Returns 0 or -EINVAL. */
static int serve__parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -EINVAL;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
        h++, hl -= 2;
    if (hl >= hostlen)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (!strcmp(host, "localhost"))
        snprintf(host, hostlen, "127.0.0.1");
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1)
        return -EINVAL;
    *port = (int)p;
    return 0;
}

/* A PostgreSQL connection string: a URL, or libpq's key=value form. */
int serve_opts_is_pg(const char *store)
{
    return strncmp(store, "postgres://", 11) == 0 || strncmp(store, "postgresql://", 13) == 0 ||
           strchr(store, '=') != NULL;
}

/* A node's name among the nodes on one database: its --node-url, else host name and data dir (the
 * same agentd restarted is the same node, and takes its lease back at once). */
void serve_opts_node_name(const struct serve_opts *o, char *out, size_t len)
{
    char host[256] = "localhost", dir[PATH_MAX];
    if (o->node_url && *o->node_url) {
        snprintf(out, len, "%s", o->node_url);
        return;
    }
    (void)gethostname(host, sizeof host - 1);
    snprintf(out, len, "%s:%s", host, realpath(o->data, dir) ? dir : o->data);
}

/* Checks what the options table cannot: --listen's form, and that a server off loopback has a
 * token. Fills host and port. 0, or -EINVAL having said why on stderr. */
static int serve__check(struct serve_opts *o, char *host, size_t hostlen, int *port)
{
    if (serve__parse_listen(o->listen, host, hostlen, port) != 0) {
        fprintf(stderr, "agentd serve: --listen must be ADDRESS:PORT, not '%s'\n", o->listen);
        return -EINVAL;
    }
    if (!serve__is_loopback(host) && (o->token == NULL || *o->token == '\0')) {
        fprintf(stderr,
                "agentd serve: refusing to listen on %s without --token: off loopback every request "
                "must be authenticated (give --token T, or listen on 127.0.0.1)\n",
                host);
        return -EINVAL;
    }
    for (size_t n = o->public_url ? strlen(o->public_url) : 0; n > 0 && o->public_url[n - 1] == '/'; n--)
        o->public_url[n - 1] = '\0'; /* URLs are made as public_url + "/v1/..." */
    if (strcmp(o->store, "sqlite") != 0 && !serve_opts_is_pg(o->store)) {
        fprintf(stderr,
                "agentd serve: --store must be sqlite or a PostgreSQL connection string (postgres://... or "
                "host=... dbname=...), not '%s'\n",
                o->store);
        return -EINVAL;
    }
    if (strcmp(o->shard_policy, "balance") == 0 && !serve_opts_is_pg(o->store)) {
        fprintf(stderr, "agentd serve: --shard-policy is for the PostgreSQL store (SQLite has one shard)\n");
        return -EINVAL;
    }
    if (o->shards > 1 && strcmp(o->store, "sqlite") != 0) {
        fprintf(stderr, "agentd serve: --shards is for tests on the SQLite store only\n");
        return -EINVAL;
    }
    return 0;
}

int serve_opts_parse(struct serve_opts *o, int argc, char **argv, char *host, size_t hostlen, int *port)
{
    char err[512] = "";
    int npos;
    int rc = opt_parse(serve__opts, CORE_ARRAY_LEN(serve__opts), o, argc, argv, &npos, serve__usage, err,
                       sizeof err);
    if (rc == 1)
        return 1;
    if (rc != 0 || npos != 0) {
        fprintf(stderr, "agentd serve: %s\n", rc ? err : "unexpected argument (see --help)");
        return -EINVAL;
    }
    if (log_parse_level(o->log_level, &log_threshold) != 0 || serve__check(o, host, hostlen, port) != 0)
        return -EINVAL;
    return 0;
}

void serve_opts_free(struct serve_opts *o) { opt_free(serve__opts, CORE_ARRAY_LEN(serve__opts), o); }
