/* serve — wiring of the server. See serve.h. */
#include "serve/serve.h"
#include "core/core.h"
#include "core/opt.h"
#include "exec/exec.h"
#include "http/http.h"
#include "serve/serve_http.h"
#include "serve/serve_opts.h"
#include "serve/serve_feed_http.h"
#include "serve/serve_handoff.h"
#include "serve/serve_hold_http.h"
#include "serve/serve_internal_http.h"
#include "store/store.h"
#include "stream/stream.h"
#include "stream/stream_http.h"
#include "session/session.h"
#include "mcp/mcp_http.h"
#include "serve/serve_observe_http.h"
#include "subs/subs.h"
#include "ui/ui.h"
#include "ui/ui_http.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <unistd.h>
#include <uv.h>

struct serve {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct store *store;
    struct streams *streams;
    struct http_server *http;
    struct stream_http *stream_http;
    uv_timer_t drain;
    int drain_ticks;
    uv_timer_t load; /* hands the node's load to the store, whose heartbeat records it (GET /v1/nodes) */
    int load_ready;
    int drained; /* the HTTP drain ended; the drain timer still cancels reads held */
    int loop_ready, signals_ready;
    struct subs *subs;
    struct serve_observe *observe; /* commits here relayed to the subscriptions on shard 0's holder */
    struct sessions *sessions;
    struct mcp_http *mcp;
    struct serve_feed *feed; /* balance: the sessions' relay to shard 0's holder over HTTP */
    struct ui *ui;           /* NULL with --no-ui */
    char *base_url;          /* http://HOST:PORT as clients reach it: printed first, named in callback URLs */
    /* Several nodes on one PostgreSQL: every request goes to its shard (serve_dispatch_http, the
     * front route): served here when this node holds the shard, else forwarded to its holder. A
     * node that holds no shard yet (a follower: one node holds them all for now) waits for the
     * store's heartbeat to take the lease for it, which wakes lease_async: the node then loads the
     * registry and the sessions and serves locally (serve__own). */
    uv_async_t lease_async;
    int async_ready;
    pthread_mutex_t lease_mu; /* async_ready against the heartbeat thread's wake-ups */
    int failed;               /* a take-over could not build the services: exit 1 */
    struct serve_forward forward;
    struct serve_reads reads;        /* a follower's catch-up reads (reads.sh NULL on an owner) */
    struct serve_internal *internal; /* fork refs between nodes */
    /* --shard-policy balance: the node serves the shards it holds. loaded: those whose streams the
     * registry has loaded (the router serves only those here; a request for one held but not loaded
     * yet waits). The services (subscriptions, sessions) run on shard 0's holder. */
    int balance;
    uint64_t loaded[SERVE_SHARD_WORDS];
    /* shards being given up (serve_handoff.c): still held here, not loaded again meanwhile */
    uint64_t draining[SERVE_SHARD_WORDS];
    struct serve_handoff *handoff; /* balance only */
    /* balance: the load of shards taken, off the loop (serve__on_shards): when the running one
     * started, and after a failed one, the timer that tries again (load_wait_ms, doubling) */
    uint64_t load_t0;
    /* the shards of that load, or of the failed one to be tried again: held here, not loaded yet.
     * One of them lost is lost as a loaded one is (serve__lost): a fenced node takes nothing again */
    uint64_t taking[SERVE_SHARD_WORDS];
    uv_timer_t load_retry;
    int load_retry_ready, load_fails, load_wait_ms;
    const struct serve_opts *o;
};

static void serve__on_lease(uv_async_t *a);
static void serve__load_retry_close(struct serve *s);
static void serve__on_shards(struct serve *s);
static int serve__node_lost(struct serve *s);
static int64_t serve__lease_epoch(struct serve *s);
static void serve__lease_close(struct serve *s);

static void serve__health(struct http_req *req, void *arg)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    http_res_json_text(req, 200, ok, sizeof ok - 1);
}

/* How often the load is handed over: the heartbeat records it with each beat, about once a second
 * (store_pg_lease.c), so more often would not be seen sooner. A walk of the sessions: microseconds
 * for thousands. */
#define SERVE_LOAD_MS 1000

static void serve__load_tick(uv_timer_t *t)
{
    struct serve *s = t->data;
    size_t agents = 0, runtimes = 0;
    if (s->sessions) /* a follower has none */
        sessions_load(s->sessions, &agents, &runtimes);
    store_set_load(s->store, (int64_t)agents, (int64_t)runtimes);
}

static void serve__on_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    log_info("serve: signal %d, committing and stopping", signum);
    uv_stop(&s->loop);
}

#define SERVE_DRAIN_TICK_MS     50
#define SERVE_DRAIN_TICKS       40 /* give clients two seconds to finish before exiting anyway */
/* Reads the database still holds after a second (a lock) are cancelled: answered 503 within the
 * drain's two seconds, not whenever the lock goes. */
#define SERVE_DRAIN_READS_TICKS 20

static void serve__drain_tick(uv_timer_t *t)
{
    struct serve *s = t->data;
    if (s->drain_ticks >= SERVE_DRAIN_READS_TICKS) { /* each tick: a cancel may come before its query */
        if (s->streams && streams_syncing(s->streams))
            streams_reads_cancel(s->streams);
        if (stream_http_reading(s->reads.sh))
            stream_http_reads_cancel(s->reads.sh);
    }
    if (s->drained) { /* serve__drain waits for reads and fsyncs: only the count goes on */
        s->drain_ticks++;
        return;
    }
    if (http_server_drain(s->http) == 0 || ++s->drain_ticks >= SERVE_DRAIN_TICKS)
        uv_stop(&s->loop);
}

/* Graceful stop: no new connections, live readers finish (they resume from their offsets), what is
 * pending commits, and open connections get a moment to close. */
static void serve__drain(struct serve *s)
{
    http_server_shutdown(s->http);
    serve_hold_stop(s->forward.hold);
    serve_handoff_stop(s->handoff);
    if (s->load_ready) /* a clean stop records no load (store_pg_lease.c) */
        uv_close((uv_handle_t *)&s->load, NULL);
    s->load_ready = 0;
    serve__load_retry_close(s);
    serve__lease_close(s);
    /* Runtimes get the drain time to exit; their processes never outlive the server. */
    if (s->sessions)
        sessions_close_runtimes(s->sessions);
    if (s->streams) {
        streams_shutdown(s->streams);
        streams_flush(s->streams);
    }
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    uv_timer_init(&s->loop, &s->drain);
    s->drain.data = s;
    uv_timer_start(&s->drain, serve__drain_tick, SERVE_DRAIN_TICK_MS, SERVE_DRAIN_TICK_MS);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    s->drained = 1; /* the timer ticks on: it cancels reads still held */
    if (s->streams)
        streams_flush(s->streams);
    /* An fsync still in the thread pool (a loaded machine) must complete before the teardown
     * closes the store it syncs, and its completion answers the writes it covers (so must a
     * catch-up read on one of the store's reader connections, which answers its client: one the
     * database holds is cancelled a second into the drain, serve__drain_tick); a session's
     * directory removal or fork copy still there would touch the loop after it is gone (the
     * worker queues its completion on it): wait for them, not for the loop to be empty (an idle
     * client would keep it alive). */
    while ((s->streams && streams_syncing(s->streams)) || stream_http_reading(s->reads.sh) ||
           sessions_working(s->sessions))
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&s->drain, NULL);
}

#define SERVE_TEARDOWN_TURNS 8 /* close callbacks need a few loop turns */

/* Frees whatever was built, in reverse order. With clients still connected, h2o keeps their memory
 * until the process exits. */
static void serve__teardown(struct serve *s)
{
    if (s->streams)
        streams_set_observer(s->streams, NULL, NULL);
    mcp_http_free(s->mcp); /* before sessions_free: it cancels runtime calls still awaited */
    sessions_free(s->sessions);
    if (subs_working(s->subs)) /* its scan reads the store, freed below */
        streams_reads_cancel(s->streams);
    while (subs_working(s->subs))
        uv_run(&s->loop, UV_RUN_ONCE);
    serve_feed_free(s->feed); /* after: a relay still in flight ends (-ECANCELED) into a freed registry's
                                 last references */
    subs_free(s->subs);
    stream_http_free(s->stream_http);
    stream_http_free(s->reads.sh);
    streams_free(s->streams);
    serve_observe_free(s->observe);
    if (s->forward.hold) /* nothing is held after serve_hold_stop; nothing may be offered either */
        http_set_unreached(s->http, NULL, NULL);
    http_server_free(s->http);
    serve_internal_free(s->internal); /* after the requests whose refs it asks for */
    serve_hold_free(s->forward.hold);
    serve_handoff_free(s->handoff);
    if (s->signals_ready) {
        uv_close((uv_handle_t *)&s->sigint, NULL);
        uv_close((uv_handle_t *)&s->sigterm, NULL);
    }
    serve__lease_close(s);
    serve__load_retry_close(s);
    if (s->loop_ready) {
        /* No fsync is in the thread pool any more (serve__drain waited for it, and streams_free
         * committed the rest itself), so these turns only run close callbacks. */
        for (int i = 0; i < SERVE_TEARDOWN_TURNS; i++)
            uv_run(&s->loop, UV_RUN_NOWAIT);
        if (uv_loop_close(&s->loop) != 0)
            log_debug("serve: handles still open at exit");
    }
    store_free(s->store);
    ui_free(s->ui);
    free(s->base_url);
    free(s->forward.seen);
    free(s->forward.views);
}

/* The heartbeat thread saw the lease change (store_pg_config.on_lease): wake the loop, unless the
 * handle is closing (the thread runs until store_free, after the loop stopped). */
static void serve__lease_changed(void *arg)
{
    struct serve *s = arg;
    pthread_mutex_lock(&s->lease_mu);
    if (s->async_ready)
        uv_async_send(&s->lease_async);
    pthread_mutex_unlock(&s->lease_mu);
}

static void serve__load_retry_close(struct serve *s)
{
    if (s->load_retry_ready)
        uv_close((uv_handle_t *)&s->load_retry, NULL);
    s->load_retry_ready = 0;
}

static void serve__lease_close(struct serve *s)
{
    pthread_mutex_lock(&s->lease_mu);
    if (s->async_ready)
        uv_close((uv_handle_t *)&s->lease_async, NULL);
    s->async_ready = 0;
    pthread_mutex_unlock(&s->lease_mu);
}

/* The HTTP server with /v1/health, then s->base_url, now that the port is bound; the store (a
 * follower's, on PostgreSQL, does not hold the lease yet) and /v1/nodes. 0, or -errno with the
 * reason in err. */
static int serve__build_core(struct serve *s, const struct serve_opts *o, const char *host, int port,
                             char *err, size_t errlen)
{
    int rc;
    struct http_config hcfg = {
        .host = host,
        .port = port,
        .token = o->token,
        .max_body = (size_t)o->max_body,
        .io_timeout_ms = (uint64_t)o->io_timeout,
        .max_queued = (size_t)o->max_queued,
    };
    if ((rc = http_server_new(&s->http, &s->loop, &hcfg, err, errlen)))
        return rc;
    int v6 = strchr(host, ':') != NULL;
    s->base_url =
        xasprintf("http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", http_server_port(s->http));
    http_server_set_node(s->http, o->node_url && *o->node_url ? o->node_url : s->base_url);
    http_route(s->http, "/v1/health", serve__health, s);

    enum store_durability d = !strcmp(o->durability, "os") ? STORE_OS : STORE_FSYNC;
    char token_hash[sizeof s->forward.token_hash];
    serve_token_hash(o->token, token_hash, sizeof token_hash);
    if (serve_opts_is_pg(o->store)) {
        char node[PATH_MAX + 300];
        serve_opts_node_name(o, node, sizeof node);
        uv_async_init(&s->loop, &s->lease_async, serve__on_lease);
        s->lease_async.data = s;
        s->async_ready = 1;
        struct store_pg_config pc = {.conninfo = o->store,
                                     .node = node,
                                     .node_url = o->node_url,
                                     .token_hash = token_hash,
                                     .lease_ms = o->lease_ms,
                                     .durability = d,
                                     .follow = 1,
                                     .balance = s->balance,
                                     .on_lease = serve__lease_changed,
                                     .lease_arg = s};
        rc = store_open_pg(&s->store, &pc, err, errlen);
    } else {
        rc = store_open(&s->store, o->data, d, err, errlen);
    }
    if (rc != 0)
        return rc;
    http_route(s->http, "/v1/nodes", serve_nodes_http, &s->forward);
    s->observe = serve_observe_new(&s->loop, &s->forward, o->token, &s->subs);
    http_route(s->http, SERVE_OBSERVE_PATH, serve_observe_http, s->observe);
    s->forward = (struct serve_forward){
        .store = s->store,
        .sessions = &s->sessions,
        .http = s->http,
        /* an upstream may be silent for a whole long-poll, or between two SSE events */
        .upstream_timeout_ms =
            (uint64_t)(o->long_poll_timeout > o->sse_max ? o->long_poll_timeout : o->sse_max) +
            (uint64_t)o->io_timeout,
        .lease_ms = serve_opts_is_pg(o->store) ? o->lease_ms : 0,
    };
    snprintf(s->forward.token_hash, sizeof s->forward.token_hash, "%s", token_hash);
    /* the store's count (agentd_meta's on PostgreSQL), at most what the router's bitmaps hold */
    int n = store_shards(s->store, NULL, 0);
    s->forward.nshards = n < 1 ? 1 : n > STORE_SHARDS ? STORE_SHARDS : n;
    s->forward.views = xcalloc((size_t)s->forward.nshards, sizeof *s->forward.views);
    s->forward.seen = xcalloc((size_t)s->forward.nshards, sizeof *s->forward.seen);
    for (int k = 0; k < s->forward.nshards; k++)
        serve_shard_view(&s->forward, k, &s->forward.seen[k]);
    if (s->balance)
        s->forward.loaded = s->loaded;
    http_set_front(s->http, serve_dispatch_http, &s->forward);
    s->internal = serve_internal_new(&s->loop, &s->forward, &s->streams, o->token);
    http_route_flags(s->http, SERVE_INTERNAL_ROUTE, serve_internal_http, s->internal, HTTP_ROUTE_OWN_AUTH);
    return 0;
}

/* The streams' HTTP settings: the owner's and a follower's catch-up reads answer alike. */
static struct stream_http_config serve__stream_http_config(const struct serve_opts *o)
{
    return (struct stream_http_config){
        .long_poll_timeout_ms = (uint64_t)o->long_poll_timeout,
        .sse_max_ms = (uint64_t)o->sse_max,
        .max_append = (size_t)o->max_body,
        .read_chunk = 1 << 20,
    };
}

/* The owner's part: the stream registry (loaded from the store; balance: empty, each shard loaded
 * once taken, serve__on_shards) and its resource. */
static int serve__build_streams(struct serve *s, const struct serve_opts *o, char *err, size_t errlen)
{
    int rc;
    static const uint64_t none[STORE_SHARD_WORDS];
    struct streams_config scfg = {.max_append = (size_t)o->max_body,
                                  .read_chunk = 1 << 20,
                                  .cache_bytes = (size_t)o->stream_cache,
                                  .shards = s->balance ? s->forward.nshards : (int)o->shards,
                                  .first = s->balance ? none : NULL};
    if ((rc = streams_new(&s->streams, &s->loop, s->store, &scfg, err, errlen)))
        return rc;
    if (s->balance)
        sessions_load_side(s->streams); /* the single registry, from a database written by `all` */
    struct stream_http_config shcfg = serve__stream_http_config(o);
    s->stream_http = stream_http_new(s->http, &s->loop, s->streams, &shcfg);
    /* forks whose source's shard another node holds (serve_internal_http.h) */
    struct stream_http_fork_remote fr = serve_internal_fork_remote(s->internal);
    stream_http_set_fork_remote(s->stream_http, &fr);
    streams_set_unref_remote(s->streams, serve_internal_unref, s->internal);
    return 0;
}

/* Subscriptions: on shard 0's holder (their records are in shard 0). */
static int serve__build_subs(struct serve *s, const struct serve_opts *o, char *err, size_t errlen)
{
    struct subs_config subcfg = {.data_dir = o->data,
                                 .base_url = o->public_url && *o->public_url ? o->public_url : s->base_url,
                                 .scan = s->balance ? serve_observe_scan : NULL, /* other nodes' commits */
                                 .scan_arg = s->store,
                                 /* wake streams in other nodes' shards */
                                 .wake_remote = s->balance ? serve_internal_append : NULL,
                                 .wake_remote_arg = s->internal};
    int rc = subs_new(&s->subs, &s->loop, s->streams, &subcfg, err, errlen);
    if (rc == 0) {
        streams_set_observer(s->streams, subs_observe, s->subs);
        http_route_flags(s->http, SUBS_HTTP_PREFIX, subs_http_handle, s->subs, HTTP_ROUTE_OWN_AUTH);
    }
    return rc;
}

/* Subscriptions, sessions with their MCP endpoint, and the dashboard, each mounting its routes.
 * Balance: every node that holds shards runs sessions (each shard's loaded by serve__on_shards with
 * its own lease), and subscriptions run on shard 0's holder. 0, or -errno with the reason in err. */
static int serve__build_services(struct serve *s, const struct serve_opts *o, char *err, size_t errlen)
{
    int rc;
    if ((!s->balance || streams_shard_held(s->streams, 0)) && (rc = serve__build_subs(s, o, err, errlen)))
        return rc;
    if (s->balance && (rc = serve_feed_new(&s->feed, &s->loop, s->base_url, o->token)))
        return rc;

    /* The demo agent is this binary: resolved now, so that a rebuild while the server runs is
     * what later demo runs start (a path, not a descriptor of the old file). */
    char self_exe[PATH_MAX];
    ssize_t self_len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (self_len > 0)
        self_exe[self_len] = '\0';
    else
        log_warn("serve: cannot resolve /proc/self/exe (%s): demo sessions will not run", strerror(errno));
    struct sessions_config sescfg = {
        .data_dir = o->data,
        .base_url = s->base_url,
        .agent_auth = o->token && *o->token,
        .runtime_idle_ms = (uint64_t)o->runtime_idle,
        .runtime_output_limit = (size_t)o->runtime_output_limit,
        .runtime_spin_us = o->runtime_spin ? o->runtime_spin : -1,
        .self_exe = self_len > 0 ? self_exe : NULL,
        .agent_idle_ms = (uint64_t)o->agent_idle,
        .node_lost = serve__node_lost(s),
        .feed_epoch = serve__lease_epoch(s),
        .defer_load = s->balance,
        .directory = s->balance,
        .feed_append = s->balance ? serve_feed_append : NULL,
        .feed_ids = s->balance ? serve_feed_ids : NULL,
        .feed_ctx = s->feed,
    };
    if ((rc = sessions_new(&s->sessions, &s->loop, s->streams, &sescfg, err, errlen)))
        return rc;
    sessions_routes(s->sessions, s->http);
    s->mcp = mcp_http_new(s->sessions, s->http); /* POST /v1/sessions/<id>/mcp: the runtime tool over MCP */
    sessions_set_mcp(s->sessions, mcp_http_handle, s->mcp);

    if (!o->no_ui) {
        if ((rc = ui_new(&s->ui, o->ui_dir, err, errlen)))
            return rc;
        ui_routes(s->ui, s->http); /* `/` and every path outside the API's prefixes */
    }
    return 0;
}

/* Did another node hold the write lease before this one took it? Then the runs the registry shows
 * running were that node's, and they end node_lost (else server_restart: this node restarted). */
static int serve__node_lost(struct serve *s)
{
    struct store_lease l;
    store_lease(s->store, &l);
    char node[PATH_MAX + 300];
    serve_opts_node_name(s->o, node, sizeof node);
    return l.previous[0] != '\0' && strcmp(l.previous, node) != 0;
}

/* The epoch of the lease this node holds: its sessions' relay to the `sessions` feed writes with it,
 * so that a deposed holder's late record is refused (session_shard.c). */
static int64_t serve__lease_epoch(struct serve *s)
{
    struct store_lease l;
    store_lease(s->store, &l);
    return l.epoch;
}

/* The node holds the write lease: the registry and the sessions are loaded and mount their routes,
 * which stay mounted; the front route (serve_dispatch_http) sends the requests of the shards held
 * here to them from now on. Requests forwarded until now went to a node that has stopped holding
 * the lease; they end as that node's connections do. */
static int serve__own(struct serve *s, char *err, size_t errlen)
{
    int rc = serve__build_streams(s, s->o, err, errlen);
    if (rc == 0)
        rc = serve__build_services(s, s->o, err, errlen);
    s->forward.serving = rc == 0;
    return rc;
}

/* A follower's requests wait out a failover (serve_hold_http.h), up to --io-timeout: a client
 * waits that long for a quiet server anyway. */
static void serve__hold_start(struct serve *s)
{
    s->forward.hold =
        serve_hold_new(&s->loop, &s->forward, (uint64_t)s->o->io_timeout, (size_t)s->o->max_held);
    http_set_unreached(s->http, serve_place_unreached, &s->forward);
}

/* Another node holds the write lease: every request but /v1/health, /v1/nodes and catch-up reads
 * of streams (serve_read_http) goes to it (serve_dispatch_http decides, per request's shard). */
static int serve__follow(struct serve *s, char *err, size_t errlen)
{
    struct stream_http_config shcfg = serve__stream_http_config(s->o);
    s->reads = (struct serve_reads){.forward = &s->forward,
                                    .sh = stream_http_reader_new(&shcfg, &s->loop, s->store)};
    s->forward.reads = &s->reads;
    serve__hold_start(s);
    return 0;
}

/* The exit status of a node that lost the write lease to another node (EX_TEMPFAIL): a supervisor
 * that restarts it makes it a follower. */
#define SERVE_EXIT_LEASE_LOST 75

/* This node served as the owner and another node took the lease over (this one was paused or cut
 * off from the database past its lease). That node has loaded the sessions and closed their runs
 * node_lost: this node's agents and runtimes must stop now, before they act once more on a session
 * (a workspace) another node drives. So every program exec started is SIGKILLed at once, and the
 * process exits without draining or tearing down: each write would be fenced (a batch that fails
 * fenced is failed, never retried, but the teardown's would only add refusals to the log), and
 * in-flight requests end with their connections. Becoming a follower in this process would mean
 * unloading the registry, the sessions and the subscriptions without the writes their teardown
 * makes: not done; a restart does it (doc/ARCHITECTURE.md "Several nodes on one database"). */
/* What a restart after serve__lost makes of this node, for its last log line. */
static const char *serve__restart_does(const struct serve *s)
{
    return s->balance ? "takes this node's share of the shards again" : "makes this node a follower";
}

static _Noreturn void serve__lost(struct serve *s, const struct store_lease *l)
{
    size_t killed = exec_kill_all();
    char node[PATH_MAX + 300];
    serve_opts_node_name(s->o, node, sizeof node);
    if (l->owner[0] && strcmp(l->owner, node) != 0)
        log_error("serve: lost the write lease to %s at epoch %" PRId64
                  ": exiting so that a restart %s (%zu agent and runtime processes killed)",
                  l->owner, l->epoch, serve__restart_does(s), killed);
    else /* a batch found it fenced before the heartbeat read the new holder */
        log_error("serve: lost the write lease to another node (after epoch %" PRId64
                  "): exiting so that a restart %s (%zu agent and runtime processes killed)",
                  l->epoch, serve__restart_does(s), killed);
    fflush(NULL);
    _exit(SERVE_EXIT_LEASE_LOST);
}

/* Did the view of a shard change in what routing reads of it (its holder, its epoch, whether it
 * is live, held here, its URL or token)? */
static int serve__view_changed(const struct store_lease *a, const struct store_lease *b)
{
    return a->self != b->self || a->live != b->live || a->epoch != b->epoch || strcmp(a->owner, b->owner) ||
           strcmp(a->owner_url, b->owner_url) || strcmp(a->owner_token, b->owner_token);
}

/* The shards whose view changed since the last wake-up (bits set in changed), the new views kept.
 * Requests forwarded for a shard to a node that no longer holds it end now (a paused node's would
 * hang until the timeout), and WebSockets tunnelled to it: their clients retry, reaching the new
 * holder. One drop per URL left, for all its shards (one pass over the connections each). */
static void serve__views_update(struct serve *s, uint64_t *changed)
{
    int n = s->forward.nshards;
    uint64_t left[SERVE_SHARD_WORDS] = {0}; /* shards whose holder left the URL forwarded to */
    serve_shard_views_stale(&s->forward);
    struct store_lease *now = xcalloc((size_t)n, sizeof *now);
    for (int k = 0; k < n; k++) {
        const struct store_lease *was = &s->forward.seen[k];
        serve_shard_view(&s->forward, k, &now[k]);
        if (serve__view_changed(was, &now[k]))
            changed[k / 64] |= 1ull << (k % 64);
        if (!was->self && was->owner_url[0] && (now[k].self || strcmp(was->owner_url, now[k].owner_url)))
            left[k / 64] |= 1ull << (k % 64);
    }
    for (int k = 0; k < n; k++) {
        if (!(left[k / 64] >> (k % 64) & 1))
            continue;
        const char *url = s->forward.seen[k].owner_url;
        uint64_t these[SERVE_SHARD_WORDS] = {0};
        for (int j = k; j < n; j++)
            if ((left[j / 64] >> (j % 64) & 1) && strcmp(s->forward.seen[j].owner_url, url) == 0) {
                these[j / 64] |= 1ull << (j % 64);
                left[j / 64] &= ~(1ull << (j % 64));
            }
        size_t dropped = http_upstream_drop_shards(s->http, url, these);
        if (dropped)
            log_info("serve: %zu forwarded requests to %s ended: it no longer holds their shards", dropped,
                     url);
    }
    memcpy(s->forward.seen, now, (size_t)n * sizeof *now);
    free(now);
}

/* Balance: the sessions of each shard taken, with that shard's lease: its epoch for the relay, and
 * node_lost when another node held it before (its runs end node_lost; the feed hears of each again). */
static void serve__load_sessions(struct serve *s, const uint64_t *took, const struct store_lease *v)
{
    char node[PATH_MAX + 300];
    serve_opts_node_name(s->o, node, sizeof node);
    for (int k = 0; k < s->forward.nshards; k++)
        if (store_shard_in(took, k))
            (void)sessions_load_shard(s->sessions, k, v[k].epoch,
                                      v[k].previous[0] != '\0' && strcmp(v[k].previous, node) != 0);
}

/* "3,17,40" of a set of shards, for logs. */
static void serve__shard_list(const uint64_t *shards, int n, char *out, size_t len)
{
    size_t at = 0;
    out[0] = '\0';
    for (int k = 0; k < n && at + 1 < len; k++)
        if (store_shard_in(shards, k))
            at += (size_t)snprintf(out + at, len - at, "%s%d", at ? "," : "", k);
}

/* The services of the shards just loaded, on the loop: the sessions and the subscriptions start
 * with the first load (the subscriptions with shard 0), and each shard's sessions load with its
 * lease (v). 0, or -errno with the reason in err. */
static int serve__services_of(struct serve *s, const uint64_t *took, const struct store_lease *v, char *err,
                              size_t errlen)
{
    int rc = 0;
    if (s->sessions == NULL)
        rc = serve__build_services(s, s->o, err, errlen);
    else if (s->subs == NULL && store_shard_in(took, 0))
        rc = serve__build_subs(s, s->o, err, errlen);
    if (rc == 0 && s->subs == NULL) /* the service is shard 0's holder's */
        streams_set_observer(s->streams, serve_observe_relay, s->observe);
    if (rc == 0)
        serve__load_sessions(s, took, v);
    return rc;
}

/* A failed load is tried again after SERVE_LOAD_RETRY_MS, doubling up to SERVE_LOAD_RETRY_MAX_MS;
 * after SERVE_LOAD_GIVE_UP failures in a row the shards are given back (store_shard_release: another
 * node, or a later beat of this one, takes them). The node serves its other shards meanwhile. */
#define SERVE_LOAD_RETRY_MS     250
#define SERVE_LOAD_RETRY_MAX_MS 4000
#define SERVE_LOAD_GIVE_UP      5

static void serve__on_shards_timer(uv_timer_t *t) { serve__on_shards(t->data); }

/* The load of shards this node took failed (the database dark, or the load refused): nothing of them
 * is loaded; their requests stay held (each until its hold runs out: 503). Tried again later, or
 * given back. */
static void serve__load_failed(struct serve *s, const uint64_t *took, int rc)
{
    char list[STORE_SHARDS * 4];
    serve__shard_list(took, s->forward.nshards, list, sizeof list);
    s->load_fails++;
    if (s->load_fails >= SERVE_LOAD_GIVE_UP) {
        log_warn("serve: cannot load shards %s (%s), %d times in a row: giving them back", list,
                 strerror(-rc), s->load_fails);
        for (int k = 0; k < s->forward.nshards; k++)
            if (store_shard_in(took, k))
                store_shard_release(s->store, k);
        memset(s->taking, 0, sizeof s->taking); /* given up, not lost */
        s->load_fails = 0;
    } else {
        log_warn("serve: cannot load shards %s (%s): trying again in %d ms", list, strerror(-rc),
                 s->load_wait_ms);
    }
    uv_timer_start(&s->load_retry, serve__on_shards_timer, (uint64_t)s->load_wait_ms, 0);
    s->load_wait_ms =
        s->load_wait_ms * 2 > SERVE_LOAD_RETRY_MAX_MS ? SERVE_LOAD_RETRY_MAX_MS : s->load_wait_ms * 2;
}

/* The load of the shards this node took ended (streams_load_shards_start's callback, on the loop):
 * they are served from now on, their held requests go to the routes. One lost meanwhile (taken over
 * while the load ran) means exit 75, as for a loaded one: the store fenced every shard of this node
 * and its heartbeat takes none again, so a node whose only shards were loading would otherwise stay
 * up holding nothing, counted live in the others' share (pg_take_lost.t). A load that ends during a
 * stop is not served (the services would start in the drain). Then any shard taken meanwhile is
 * loaded next. */
static void serve__loaded(struct streams *ss, const uint64_t *shards, int rc, void *arg)
{
    struct serve *s = arg;
    int n = s->forward.nshards;
    uint64_t took[SERVE_SHARD_WORDS];
    memcpy(took, shards, sizeof took);
    if (rc == -ESHUTDOWN || http_server_stopping(s->http)) /* a stop: reads cancelled, or the drain */
        return;
    if (rc != 0)
        return serve__load_failed(s, took, rc);
    s->load_fails = 0;
    s->load_wait_ms = SERVE_LOAD_RETRY_MS;
    struct store_lease *v = xcalloc((size_t)n, sizeof *v);
    (void)store_shards(s->store, v, n);
    for (int k = 0; k < n; k++)
        if (store_shard_in(took, k) && !v[k].self) /* lost before the heartbeat's news of it came */
            serve__lost(s, &v[k]);
    memset(s->taking, 0, sizeof s->taking);
    int any = 0;
    for (int w = 0; w < SERVE_SHARD_WORDS; w++)
        any |= took[w] != 0;
    char err[512] = "";
    rc = any ? serve__services_of(s, took, v, err, sizeof err) : 0;
    free(v);
    if (rc != 0) {
        log_error("serve: took shards but cannot serve them: %s; stopping", *err ? err : strerror(-rc));
        s->failed = 1;
        uv_stop(&s->loop);
        return;
    }
    for (int w = 0; w < SERVE_SHARD_WORDS; w++)
        s->loaded[w] |= took[w];
    log_info("serve: node %s loaded the shards it took in %.1f ms", http_server_node(s->http),
             (double)(clock_mono_us() - s->load_t0) / 1000.0);
    s->forward.serving = s->sessions != NULL; /* none before the first shard loaded */
    serve_hold_retry_shards(s->forward.hold, took);
    serve__on_shards(s);
}

/* --shard-policy balance: the shards this node took are loaded off the loop (streams_load_shards_start;
 * the registry is made empty with the first take) while the node serves the others; the router holds
 * their requests meanwhile and serves them here once serve__loaded ran, and the services start with
 * the first load. One load at a time: shards taken while one runs are loaded after it. A shard held
 * and lost (fenced, taken over) still means exit 75 (decision 3). */
static void serve__on_shards(struct serve *s)
{
    int n = s->forward.nshards;
    struct store_lease *v = xcalloc((size_t)n, sizeof *v);
    (void)store_shards(s->store, v, n);
    for (int k = 0; k < n; k++)
        if ((store_shard_in(s->loaded, k) || store_shard_in(s->taking, k)) && !v[k].self)
            serve__lost(s, &v[k]);
    uint64_t changed[SERVE_SHARD_WORDS] = {0}, took[SERVE_SHARD_WORDS] = {0};
    serve__views_update(s, changed);
    int any = 0;
    for (int k = 0; k < n; k++)
        if (v[k].self && !store_shard_in(s->loaded, k) && !store_shard_in(s->draining, k))
            took[k / 64] |= 1ull << (k % 64), any = 1;
    free(v);
    serve_hold_retry_shards(s->forward.hold, changed);
    if (!any || s->failed || (s->streams && streams_loading(s->streams)) ||
        uv_is_active((uv_handle_t *)&s->load_retry))
        return; /* the load running (or the retry's timer) comes back here when it ends */
    char err[512] = "";
    int rc = s->streams == NULL ? serve__build_streams(s, s->o, err, sizeof err) : 0;
    s->load_t0 = clock_mono_us();
    if (rc == 0 && (rc = streams_load_shards_start(s->streams, took, serve__loaded, s)) == 0)
        memcpy(s->taking, took, sizeof s->taking);
    else if (rc == -EALREADY)
        rc = 0;
    if (rc != 0) {
        log_error("serve: took shards but cannot serve them: %s; stopping", *err ? err : strerror(-rc));
        s->failed = 1;
        uv_stop(&s->loop);
    }
}

/* The heartbeat saw the lease change. A follower that took it becomes the owner; an owner that
 * lost it exits (serve__lost); held requests of the shards whose view changed try again (the
 * router reads each shard's holder per request). */
static void serve__on_lease(uv_async_t *a)
{
    struct serve *s = a->data;
    if (s->balance) {
        serve__on_shards(s);
        return;
    }
    struct store_lease l;
    store_lease(s->store, &l);
    if (s->streams != NULL && !l.self)
        serve__lost(s, &l);
    /* Any shard it held and no longer does, lost without giving it up (decision 3: one renewal
     * renews them all, so an involuntary loss takes them all; shard 0's, above, says it first
     * while shards are taken all or nothing). */
    serve_shard_views_stale(&s->forward);
    for (int k = 0; s->streams != NULL && k < s->forward.nshards; k++) {
        struct store_lease v;
        serve_shard_view(&s->forward, k, &v);
        if (s->forward.seen[k].self && !v.self)
            serve__lost(s, &v);
    }
    uint64_t changed[SERVE_SHARD_WORDS] = {0};
    serve__views_update(s, changed);
    if (!l.self || s->streams != NULL || s->failed) {
        serve_hold_retry_shards(s->forward.hold, changed); /* to the new holders, if any */
        return;
    }
    char err[512] = "";
    uint64_t t0 = clock_mono_us();
    if (serve__own(s, err, sizeof err) != 0) {
        log_error("serve: took over the write lease but cannot serve: %s; stopping", err);
        s->failed = 1;
        uv_stop(&s->loop);
        return;
    }
    log_info("serve: node %s took over from %s (epoch %" PRId64
             "): serving locally, registry loaded in %.1f ms",
             http_server_node(s->http), *l.previous ? l.previous : "nobody", l.epoch,
             (double)(clock_mono_us() - t0) / 1000.0);
    serve_hold_retry_shards(s->forward.hold, NULL); /* requests that waited for this: served here */
}

/* Serves until SIGINT or SIGTERM, then drains. The URL goes first on stdout: scripts and tests
 * wait for that line. */
static void serve__run(struct serve *s, const struct serve_opts *o, const char *host)
{
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->signals_ready = 1;
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, serve__on_signal, SIGINT);
    uv_signal_start(&s->sigterm, serve__on_signal, SIGTERM);
    uv_timer_init(&s->loop, &s->load);
    s->load.data = s;
    s->load_ready = 1;
    uv_timer_start(&s->load, serve__load_tick, 0, SERVE_LOAD_MS);

    printf("%s\n", s->base_url);
    fflush(stdout);
    log_info("serve: listening on %s:%d, data in %s, store %s, durability %s, dashboard %s", host,
             http_server_port(s->http), o->data, store_backend(s->store), o->durability,
             s->ui ? ui_describe(s->ui) : "off (--no-ui)");
    uv_run(&s->loop, UV_RUN_DEFAULT);
    serve__drain(s);
}

int serve_main(int argc, char **argv)
{
    struct serve_opts o = {0};
    struct serve s = {.lease_mu = PTHREAD_MUTEX_INITIALIZER};
    char err[512] = "", host[256];
    int port, rc, status = 1;

    rc = serve_opts_parse(&o, argc, argv, host, sizeof host, &port);
    if (rc != 0) {
        status = rc == 1 ? 0 : 1; /* 1: --help */
        goto out;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "agentd serve: libsodium failed to initialise\n");
        goto out;
    }
    /* A full disk or a file size limit must become an error reply, not a signal that kills us. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);

    uv_loop_init(&s.loop);
    s.loop_ready = 1;
    s.o = &o;
    s.balance = serve_opts_is_pg(o.store) && strcmp(o.shard_policy, "all") != 0;
    if (serve__build_core(&s, &o, host, port, err, sizeof err) != 0) {
        fprintf(stderr, "agentd serve: %s\n", err);
        goto out;
    }
    struct serve_handoff_config hc = {.store = s.store,
                                      .streams = &s.streams,
                                      .sessions = &s.sessions,
                                      .hold = &s.forward.hold,
                                      .loaded = s.loaded,
                                      .draining = s.draining,
                                      .nshards = s.forward.nshards,
                                      .lease_ms = o.lease_ms};
    if (s.balance && serve_handoff_new(&s.handoff, &s.loop, &hc) != 0)
        goto out;
    if (s.balance) {
        uv_timer_init(&s.loop, &s.load_retry);
        s.load_retry.data = &s;
        s.load_retry_ready = 1;
        s.load_wait_ms = SERVE_LOAD_RETRY_MS;
    }
    struct store_lease l;
    store_lease(s.store, &l);
    if (l.self && !s.balance ? serve__own(&s, err, sizeof err) != 0
                             : serve__follow(&s, err, sizeof err) != 0) {
        fprintf(stderr, "agentd serve: %s\n", err);
        goto out;
    }
    serve__run(&s, &o, host);
    status = s.failed;

out:
    serve__teardown(&s);
    serve_opts_free(&o);
    return status;
}
