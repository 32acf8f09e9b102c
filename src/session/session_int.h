/*
 * session_int.h — what the files of src/session share (the list is in session.h): the session and
 * registry structs, and each file's internal functions under its own heading. Not for other
 * modules. Internal functions return 0 or a negative errno, with a sentence saying why when a
 * client caused it; session__errcode is the one mapping of those onto the error table.
 */
#ifndef AGENTD_SESSION_INT_H
#define AGENTD_SESSION_INT_H

#include <jansson.h>
#include <limits.h>

#include "core/errcode.h"
#include "core/map.h"
#include "exec/exec.h"
#include "session/session.h"

#define SESSION_ID_LEN          24
#define SESSION_NLANG           3
/* Durable records with everything needed after a restart (environment values included); under
 * __agentd/, which the HTTP stream resource does not serve. One registry per shard: this path with
 * one shard (every store today), __agentd/sessions/<k> (store_shard_of: shard k) with several
 * (session_shard.c, which also reads this one's records when upgrading). */
#define SESSION_REGISTRY_STREAM "__agentd/sessions"
/* The public State Protocol feed of the session list. */
#define SESSION_FEED_STREAM     "sessions"

#define SESSION_RUN_ID_LEN  20                   /* "run_" and 16 hex digits */
#define SESSION_PERM_ID_LEN 21                   /* "perm_" and 16 hex digits */
#define SESSION_TOKEN_LEN   (2 * SESSION_ID_LEN) /* share tokens */

/* What a session runs with, validated (session_opts.c). Owned by its session; strings are its own. */
struct session_opts {
    char *sandbox;             /* "bwrap", "none" (as the client said) or NULL */
    struct exec_limits limits; /* zero where the client set none */
    char *program, *base_url, *api_key, *model;
    char **command;      /* the agent's argv (NULL-terminated), or NULL */
    int mcp;             /* agentd's runtime tool offered to the agent; -1 for agent none */
    json_t *permissions; /* the permission policy in its normal form (session_perm.c), NULL: allow */
    int warm;            /* -1 unset (warm where the agent can be), 0: a fresh process per message */
};

struct runtime;
struct exec_env;
struct agent_adapter;
struct session_run;
struct session_wait;
struct session__repair;
struct session_agent;
struct session_perm;

/* What a degraded session failed to store, until a repair writes it back (session_write.c). */
struct session_loss {
    size_t events, inbox; /* transcript events and inbox entries lost for good */
    json_t *runs;         /* ids of runs whose record was not stored (rewritten by the repair) */
    int state;            /* the state stream's active_query was not stored */
    int record;           /* the session's record (registry and feed) was not stored */
    int streams;          /* one of its streams could not be created */
    int64_t first_ms, last_ms;
    int64_t after;              /* the transcript's durable tail before the first lost event, -1 when none */
    int rc;                     /* the last failure, -errno */
    int stop_run;               /* the active run is still to be ended */
    int64_t due_ms, backoff_ms; /* the next repair attempt */
};

struct session {
    char id[SESSION_ID_LEN + 1];
    int shard; /* store_shard_of("sessions/<id>/..."): its registry and streams (session_shard.c) */
    char *agent;
    char *workspace;
    json_t *tags;         /* array of strings */
    json_t *env;          /* object of strings, as the client declared it */
    json_t *shares;       /* array of {"token","created_at"}: read-only access to this session's streams */
    char agent_token[65]; /* "" until its first agent run; good for /v1/sessions/<id>/mcp only; in
                             memory only (runs do not outlive the server) */
    char **envp;          /* the runtimes' environment, "K=V", NULL-terminated */
    int64_t created_ms;
    int owns_workspace; /* created by agentd under DATA/workspaces */
    int purge;          /* deleted (or discarded): its workspace and home go when it is freed */
    int deleted;
    int closing; /* runtime closes in flight (+1 while closing) */
    int closed;  /* session__close_runtimes ran: a deleted session may be freed once closing is 0 */
    struct runtime *rt[SESSION_NLANG];
    struct sessions *registry;

    /* ---- agent runs (session_run.c) ---- */
    const struct agent_adapter *adapter; /* NULL for agent "none" */
    struct session_opts opts;            /* its agent's settings, sandbox and limits (session_opts.c) */
    char *native_session;                /* the agent's own session id, for resume */
    char *home;                          /* DATA/homes/<id>: the agent's HOME, kept across runs */
    struct exec_env *xenv;               /* execution environment, started with the first run */
    int env_closing;
    struct session_run *active;
    int settling; /* ended runs whose run_completed is not durable yet: the session reads as running */
    struct session_run *queue, **queue_tail;
    json_t *runs;             /* run records (State Protocol values), oldest first */
    int64_t last_activity_ms; /* last run record change or environment status change (memory) */
    int fork_pending;         /* a forked session's first run forks the agent's native session */
    char *parent;             /* the session that spawned this one, or NULL */

    /* ---- the agent's process (session_agent.c) and its permission requests (session_perm.c) ---- */
    struct session_agent *agent_proc; /* the process running the agent (serving a run, or warm), or NULL */
    unsigned caps;                    /* what the agent announced it can do (programs that announce) */
    struct session_perm *perms;       /* requests waiting for an answer, newest first */
    json_t *perms_done;               /* {request: how it ended} for requests no longer pending */

    /* ---- failed writes (session_write.c) ---- */
    struct session_loss lost;
    struct session__repair *repair; /* in flight, or NULL */
};

/* What the registry knows of one shard (session_shard.c). */
struct session__shard {
    size_t count;  /* registered sessions of the shard (placement takes the emptiest) */
    int64_t epoch; /* the relay's producer epoch on the `sessions` feed (producer shard-<k>) */
    int loaded;    /* its registry was replayed (sessions_load_shard) and not unloaded since */
    size_t forks;  /* forks of its sessions in flight (session_fork.c): their children come here */
    int node_lost; /* its previous holder was another node: the runs it shows running end node_lost */
    unsigned gen;  /* counts its loads and unloads: a feed repair of an earlier load is moot */
    /* The relay to a feed another node holds (session_shard.c): records in order, one in flight. */
    struct session__relayed *relay_head, *relay_tail;
    int relay_busy;
    int64_t relay_seq; /* the next seq of producer shard-<k> in epoch */
};

struct sessions {
    uv_loop_t *loop;
    struct streams *ss;
    int nshards;                   /* streams_shards: 1 on every store today */
    struct session__shard *shards; /* nshards of them */
    /* The directory (cfg.directory): the `sessions` feed materialized by key, id → public record, as
     * read up to dir_offset of the feed whose stream id is dir_stream; NULL: not read yet. */
    json_t *dir;
    int64_t dir_offset, dir_stream;
    struct sessions_config cfg;
    char *data_dir;
    struct map by_id;
    sessions_mcp_cb mcp_cb;
    void *mcp_arg;
    size_t live;    /* references: sessions not yet freed (deleted ones wait for their runtimes), writes
                       in flight, the tick */
    char *base_url; /* how agents reach this server (MCP), e.g. http://127.0.0.1:4437 */
    char *self_exe; /* agentd's executable, for the demo agent; NULL when unknown */
    struct http_server *http; /* set by sessions_routes: revoking credentials cuts its requests */
    int freeing;              /* sessions_free ran: the last reference frees the registry */
    size_t works;             /* thread-pool work queued and not yet completed (purges, fork copies),
                                 and environments closing: the loop must outlive them
                                 (sessions_working) */
    /* session_write.c: the wait that writes join, failed waits to answer, losses to act on */
    struct session_wait *collect;
    struct session_wait *failed_waits;
    uv_timer_t tick;
};

/* Queues work in the thread pool, counted in s->works until done has run (done must call
 * session__work_done first). It cannot fail: uv_queue_work refuses only a NULL work callback. */
void session__work(struct sessions *s, uv_work_t *w, uv_work_cb work, uv_after_work_cb done);
void session__work_done(struct sessions *s);

/* ---- durable writes (session_write.c; see its header for the rules) ---- */

/* What a write is, which says what its loss means. */
enum session_write_kind {
    SESSION_W_EVENT,  /* a transcript event */
    SESSION_W_INBOX,  /* user input in the inbox */
    SESSION_W_RUN,    /* a run record or the active query, in the state stream */
    SESSION_W_RECORD, /* the session's record: registry and feed */
    SESSION_W_STREAM, /* creating, forking, closing or deleting one of the session's streams */
};
/* An answer waiting for the writes made on its behalf. rc: 0, or the first failure as -errno. */
typedef void (*session_wait_cb)(void *arg, int rc);
/* Opens a wait: every write from now until session__wait_end joins it. at_commit: complete at the
 * commit (survives kill -9) rather than after the fsync. Waits nest: the innermost collects, and
 * the outer one counts it as one more write (it completes after it, with its failure). */
struct session_wait *session__wait_begin(struct sessions *s, int at_commit);
/* Closes the wait: cb runs once every write that joined it has completed, possibly before this
 * returns (nothing joined, or a write was refused at once). The wait is freed after cb. */
void session__wait_end(struct session_wait *w, session_wait_cb cb, void *arg);
/* Until cb has run: cb will not run (the writes still complete). NULL is a no-op. */
void session__wait_cancel(struct session_wait *w);
/* A write that is not a stream op (the relay over HTTP) joins the open wait, if any (returned, NULL
 * when none), and settles it with its outcome later, on the loop. */
struct session_wait *session__wait_join(struct sessions *s);
void session__wait_settle(struct session_wait *w, int rc);
/* Is rc (-errno) the disk being full? */
int session_storage_full(int rc);

/* Writes on behalf of se (NULL: no session's); msg is taken. run: a run record's run, or NULL.
 * Returns the offset where the message starts in its stream (once stored), or -1 when refused. */
int64_t session__write(struct sessions *s, struct session *se, enum session_write_kind kind, const char *run,
                       const char *path, json_t *msg);
/* session__write as an idempotent producer (Producer-Id producer, that epoch): the seq is the one
 * after what the stream holds for it (0 in a new epoch). A lower epoch than the stream's is refused
 * (a deposed writer). */
/* session__write, and then(arg, rc) once it is stored (0) or failed (-errno; at once when refused). */
int64_t session__write_then(struct sessions *s, struct session *se, enum session_write_kind kind,
                            const char *path, json_t *msg, session_wait_cb then, void *arg);
int64_t session__write_as(struct sessions *s, struct session *se, enum session_write_kind kind,
                          const char *path, json_t *msg, const char *producer, int64_t epoch);
/* One event in se's transcript (takes ev); nothing once se is deleted. Returns the event's offset
 * (as session__write), -1 when none. */
int64_t session__event(struct session *se, json_t *ev);
/* Every message of the JSON stream at path, as one array (a new reference), or NULL when there is
 * no such stream. A read that fails part-way ends the array there; whole (NULL: not asked) says
 * whether every message was read (no stream counts as whole). */
json_t *session__read_json(struct sessions *s, const char *path, int *whole);
/* The streams every session has, each a JSON stream at sessions/<id>/<kind> (session__stream_path). */
#define SESSION_STREAM_KINDS 3
extern const char *const session__stream_kinds[SESSION_STREAM_KINDS]; /* transcript, state, inbox */
/* The path of the session id's stream of that kind ("transcript", "state", "inbox"). */
void session__stream_path(const char *id, const char *kind, char out[128]);
/* Creates the JSON stream at path if it does not exist. */
void session__ensure_stream(struct sessions *s, struct session *se, const char *path);
/* Creates se's streams (session__stream_kinds) where they do not exist. */
void session__ensure_streams(struct sessions *s, struct session *se);
/* Creates `to` as a Durable Streams fork of `from` at offset `at` (nothing is copied). */
void session__fork_stream(struct sessions *s, struct session *se, const char *from, const char *to,
                          int64_t at);
/* Closes the stream at path (its readers see it end), or deletes it. */
void session__end_stream(struct sessions *s, struct session *se, const char *path, int delete);
/* Has a write of se failed without being repaired yet? */
int session__degraded(const struct session *se);
/* A degraded session's losses must be repaired before cb's work: 0 when se is not degraded (go on
 * now), 1 when cb will run once a repair completed (rc as for waits), or a negative errno when the
 * repair failed at once. */
int session__after_repair(struct session *se, session_wait_cb cb, void *arg);
void session__writes_init(struct sessions *s);
void session__writes_close(struct sessions *s);
/* Drops a reference on the registry (sessions, writes in flight, the tick): the last frees it once
 * sessions_free ran. */
void session__registry_unref(struct sessions *s);

json_t *session__public(const struct session *se);
void session__publish(struct sessions *s, struct session *se, const char *operation);
void session__register(struct sessions *s, struct session *se);
void session__close_runtimes(struct session *se);
/* Deleting: the last transcript event, the record, the streams closed (so that every reader sees
 * them end) or deleted with delete_streams; se reads as gone at once. session__delete_finish completes it once those writes
 * committed (rc 0: se is removed and freed when its runtimes are gone) or calls it off (rc < 0). */
void session__delete_begin(struct session *se, int delete_streams);
void session__delete_finish(struct session *se, int rc);
/* A session whose creation could not be stored goes again, without records. */
void session__discard(struct session *se);
/* A new session of that agent ("none" or an adapter's name), with its own id in shard `shard` (-1:
 * the placement's, session__place), not registered: free it with session__drop until
 * session__register takes it. NULL when shard is -1 and no shard is held here. */
struct session *session__alloc(struct sessions *s, const char *agent, int shard);
void session__drop(struct session *se);
/* Removes, in the thread pool, the directories agentd made for session id: its agent home, and the
 * workspace when it is agentd's own (workspace: its path, or NULL for one the client named). */
void session__purge_dirs(struct sessions *s, const char *id, const char *workspace);
/* Is j an array of strings? */
int session__strings(const json_t *j);
/* The one mapping from the domain's refusals (0 or a negative errno) to the codes clients get:
 * -EINVAL bad_request, -ENOENT not_found, -EBUSY and -EALREADY conflict (the session's state
 * refuses it now; answered already), -ENOTSUP unsupported_by_agent, -EACCES permission_denied, a
 * full disk storage_full; anything else is `otherwise`, the operation's own failure. */
enum errcode session__errcode(int rc, enum errcode otherwise);

/* Builds a session from its registry record (NULL when the record is unusable); frees a
 * registered one (its directories go too when it was purged). */
struct session *session__from_record(json_t *rec);
void session__free(struct session *se);
/* After a load: a missing workspace made again, runs that were running closed. */
void session__recover(struct sessions *s, struct session *se);
/* The directories of sessions that are no more: k -1 once every shard is loaded, else those of
 * shard k's ids once its registry was read whole. */
void session__sweep(struct sessions *s, int k);
/* The registry record of se, and its public view for the feed, as State Protocol changes (new
 * references). */
json_t *session__record_msg(const struct session *se, const char *operation);
json_t *session__public_msg(const struct session *se, const char *operation);

/* ---- session_shard.c: sessions by shard ---- */
/* The shard of session id (store_shard_of of its streams' paths). */
int session__shard_of(const struct sessions *s, const char *id);
/* The registry stream of shard k. */
void session__registry_path(const struct sessions *s, int k, char out[64]);
/* Where a new session goes: the loaded shard whose streams take writes here with the fewest
 * sessions; -1 when there is none. */
int session__place(const struct sessions *s);
/* A fresh id in shard k: drawn until it lands there (nshards / held draws expected). */
void session__new_id(struct sessions *s, char out[SESSION_ID_LEN + 1], int k);
/* Appends the public record msg (taken) to the `sessions` feed as shard k's relay: producer
 * shard-<k>, the shard's epoch, the producer's next seq. */
void session__relay(struct sessions *s, struct session *se, int k, json_t *msg);
/* session__publish's two writes: the record to the shard's registry (reg) and the public one to the
 * feed; a feed another node holds is told once the record is stored, and not when it is not. */
void session__relay_after(struct sessions *s, struct session *se, int k, const char *reg, json_t *record,
                          json_t *msg);
/* The `sessions` feed (held here) materialized by key: id → public record, every node's sessions
 * (GET /v1/sessions with cfg.directory). */
json_t *session__directory(struct sessions *s);
/* Loads every shard the streams have loaded (sessions_new). */
void session__load_all(struct sessions *s);

/* ---- session_fork.c ---- */
struct session_fork;
/* A fork ended: rc 0 and the child (registered, its records committed), or a negative errno and no
 * child: why says what failed when it was the copy ("cannot copy the workspace"), NULL when the
 * records could not be stored. */
typedef void (*session_fork_cb)(void *arg, int rc, const char *why, struct session *child);
/* Starts forking parent at the transcript offset `at` (NULL: its tail), with tags (NULL: the
 * parent's); cb runs once, later. 0 with *out (valid until cb runs or session__fork_cancel), or a
 * negative errno with why (-EINVAL: a bad offset or tags). */
int session__fork_start(struct session *parent, const char *at, json_t *tags, session_fork_cb cb, void *arg,
                        struct session_fork **out, const char **why);
/* The caller is going away: cb will not run (the fork completes, or is undone, without it). */
void session__fork_cancel(struct session_fork *f);
/* Share links: a new token (recorded), a revocation (recorded; 0 or -ENOENT), and the withdrawal of
 * a token whose creation could not be stored (nothing recorded). */
void session__share_add(struct session *se, char tok[SESSION_TOKEN_LEN + 1]);
int session__share_revoke(struct session *se, const char *token);
void session__share_remove(struct session *se, const char *token);
/* A random id: prefix, then hex digits filling out up to cap - 1 (an even count). */
void session__random_id(char *out, size_t cap, const char *prefix);
/* Adds to a session's public view what lists show beside busy/idle: env_status, last_run,
 * last_activity, queued, totals (session_run.c). */
void session__activity(const struct session *se, json_t *pub);

/* session_agents_http.c: GET /v1/agents, the agents sessions can be created with (route arg: the
 * registry). */
#define SESSION_AGENTS_PATH "/v1/agents"
void session__agents_route(struct http_req *req, void *arg);

/* session_events_http.c: GET /v1/sessions/<id>/events?before=O&limit=N, history pages of the
 * transcript, newest first, with each event's own offset. */
void session__events(struct sessions *s, struct session *se, struct http_req *req);

/* session_ws.c: GET /v1/sessions/<id>/ws[?offset=O] upgraded to a WebSocket that sends the
 * session's transcript events, from the offset, live. */
void session__ws(struct sessions *s, struct session *se, struct http_req *req);

/* ---- session_opts.c ---- */
/* Validates a create body's agent settings (for adapter; NULL: agent none), sandbox and limits
 * into o: 0, or -EINVAL with why (-ENOTSUP: a policy the agent cannot follow). */
int session__opts_parse(struct session_opts *o, json_t *body, const struct agent_adapter *adapter,
                        const char **why);
/* Reads a record's "agent_opts" (leniently: what is not understood is left out). */
void session__opts_from_json(struct session_opts *o, json_t *j, const struct agent_adapter *adapter);
/* The JSON form (new reference); redact: the API key shows as "***". */
json_t *session__opts_json(const struct session_opts *o, int redact);
void session__opts_copy(struct session_opts *to, const struct session_opts *from,
                        const struct agent_adapter *adapter);
/* PATCH /v1/sessions/<id> {"permissions"?, "warm"?}: permissions merge into the current policy;
 * the record is written (it joins the open wait). 0, or -EINVAL / -ENOTSUP with why. */
int session__patch(struct session *se, json_t *body, const char **why);
/* Frees what o holds and leaves it empty (mcp -1). */
void session__opts_free(struct session_opts *o);
/* The session's limits as exec's (zero when none); returns whether it has any. */
int session__limits(const struct session *se, struct exec_limits *l);
/* Whether the session runs in bubblewrap ("sandbox": "bwrap"): its agent and its runtimes alike. */
int session__sandboxed(const struct session *se);

/* ---- session_perm.c: the permission policy and the requests waiting for an answer ---- */
/* How a permission request ended; strings borrowed for the callback. by: "policy", "user",
 * "timeout", "expired". */
struct session_decision {
    int allow;
    const char *by;
    const char *message;
    const json_t *updated_input; /* the answer changed the tool's input (NULL: not) */
    const json_t *request;       /* what was asked: {"tool", "input", ...} as session__perm_ask got it */
};
typedef void (*session_perm_cb)(void *arg, const struct session_decision *d);
/* Validates a policy (create body, or PATCH merged into base; NULL: the default) into its normal
 * form {"mode","allow","deny","timeout_ms"}: 0 with *out (new reference), or -EINVAL with why. */
int session__policy_parse(json_t *j, const json_t *base, json_t **out, const char **why);
/* The session's policy in its normal form (new reference; the default when it has none). */
json_t *session__policy(const struct session *se);
/* What policy (normal form) says to a call of tool with input: 1 allow, 0 deny, -1 ask a person;
 * *rule is the rule that decided (borrowed from policy), NULL when the mode did. */
int session__policy_decide(const json_t *policy, const char *tool, const json_t *input, const char **rule);
/* Whether adapter (NULL: agent none, whose only tool is agentd's runtime over MCP) can follow
 * policy: 1, or 0 with why when the policy may refuse but the agent cannot ask (-> 409
 * unsupported_by_agent). A program that announces its capabilities is given the benefit of the
 * doubt (the session warns when it turns out not to ask). */
int session__policy_possible(const struct agent_adapter *adapter, const json_t *policy, const char **why);
/* Whether the policy may refuse anything (mode ask or deny, or a deny rule): agents are then asked
 * to ask before each tool. */
int session__policy_asks(const struct session *se);
/* The session's agent (or agentd's MCP tool for it) asks to use a tool. req {"tool", "input",
 * "suggestions"?, "tool_use_id"?, "native_request"?} is taken; native (borrowed, may be NULL) is the
 * agent's line. The policy decides at once (cb runs before this returns; NULL is returned) or the
 * request waits for a client: the handle, valid until cb runs or session__perm_cancel. cb always
 * runs once unless cancelled: with the answer, a timeout, or expired (by "expired") when the run
 * ends or the session goes first. */
struct session_perm *session__perm_ask(struct session *se, const char *run, json_t *req, json_t *native,
                                       session_perm_cb cb, void *arg);
/* The asker is gone (an abandoned MCP call): the request expires, recorded; cb does not run. */
void session__perm_cancel(struct session_perm *p);
/* Requests of run (NULL: all) expire with the message why: their asker hears it (cb, by
 * "expired", a denial), and the transcript says so. */
void session__perms_expire(struct session *se, const char *run, const char *why);
/* A client answers request id with body {"decision","message"?,"updated_input"?,"remember"?}: its
 * records are written (they join the open wait) and *answer says what was decided; the decision
 * reaches the agent in session__perm_answered. -ENOENT (no such request), -EALREADY (answered,
 * expired, or an answer being stored), -EINVAL (the body), with why. */
int session__perm_answer(struct session *se, const char *id, json_t *body, json_t **answer, const char **why);
/* The answer's records committed (rc 0: the agent is told now) or not (the request waits again). */
void session__perm_answered(struct session *se, const char *id, int rc);
/* The requests waiting, oldest first (new reference); how many. */
json_t *session__perms_list(const struct session *se);
size_t session__perms_pending(const struct session *se);
/* After a restart: requests the state stream (its messages, borrowed) shows pending expire. */
void session__perms_recover(struct session *se, json_t *msgs);
void session__perms_free(struct session *se);

/* ---- session_agent.c: the agent's process, which may outlive a run (warm) ---- */
/* Gives the session's active run to its agent: a warm process that is idle takes it as its next
 * message; otherwise a new process starts, once the environment is ready and the last process has
 * gone. Called again (by the environment, the last process's exit) until the run is served. */
void session__agent_kick(struct session *se);
/* Whether the active run is in an agent's hands (0: still waiting for a process). */
int session__agent_serving(const struct session *se);
/* Stops the run's process hard (cancel, or agentd failed the run): its processes found, the
 * adapter's cancel line, then SIGTERM (AGENT_CANCEL_TERM_MS later with a line) and SIGKILL. The run
 * ends when the process has exited. */
void session__agent_kill(struct session *se);
/* Interrupts the active run's turn (the process and its conversation stay) or steers it (text into
 * the running turn): 0, or -ENOTSUP when the agent cannot. */
int session__agent_interrupt(struct session *se);
int session__agent_steer(struct session *se, const char *text);
/* The warm process is no longer wanted (a fork, a policy it was not started with): it stops now
 * when idle, else when its run ends. reason names why in its status event. */
void session__agent_retire(struct session *se, const char *reason);
/* An idle process that is stopping (retired): cb runs once it has exited, and 1 is returned; 0 when
 * there is none to wait for (no process, or one serving a run). */
int session__agent_when_gone(struct session *se, void (*cb)(void *arg), void *arg);
/* What the session's agent can do (enum agent_cap): the adapter's, or what the program announced. */
unsigned session__agent_caps(const struct session *se);
/* Adds to a session's public view what a person in the loop needs: "capabilities" {approvals, steer,
 * interrupt, warm}, "agent_process" ({"pid","state":"busy"|"idle"|"stopping"} or null),
 * "permissions" (the policy in its normal form) and "pending_permissions" (how many wait). */
void session__agent_view(const struct session *se, json_t *pub);

/* ---- session_run.c ---- */
/* The session's execution environment, created and started on first need (its first run, or a
 * runtime of a session with cgroup limits); NULL when it cannot be created. */
struct exec_env *session__env(struct session *se);
/* User input for se's agent: it goes to the inbox and becomes a run, started now or queued by mode
 * (queue, interrupt, reject, steer; NULL: queue), or, with steer while a run is active and its agent
 * takes it, goes into that run's turn. 0 with *answer (the run's record, new reference; a steered
 * one {"run","status","mode","steered"}), or -EINVAL (a bad mode) or -EBUSY (no agent; a run active
 * and mode reject) with why. */
int session__message(struct session *se, const char *text, const char *mode, json_t **answer,
                     const char **why);
/* Cancels the active or a queued run: 0 with *answer ({"run","status"}), or -EBUSY with why when no
 * queued or running run has that id. */
int session__cancel_run(struct session *se, const char *run, json_t **answer, const char **why);
/* Interrupts the active run: its turn ends (status interrupted), the agent's process and
 * conversation stay. 0 with *answer, -EBUSY (not the running run) or -ENOTSUP (the agent cannot). */
int session__interrupt_run(struct session *se, const char *run, json_t **answer, const char **why);
/* The queued inputs, oldest first: [{"input","text","mode","created_at"}] (new reference). */
json_t *session__inbox(const struct session *se);
/* Withdraws a queued input before it starts: 0 with *answer, -EBUSY (started or ended), -ENOENT. */
int session__withdraw(struct session *se, const char *input, json_t **answer, const char **why);

/* The runs' side of the agent's process (session_agent.c); r is the session's active run. */
const char *session__run_id(const struct session_run *r);
const char *session__run_text(const struct session_run *r);
/* An event of r's agent (taken): recorded in the transcript, or kept as the run's result. */
void session__run_event(struct session_run *r, json_t *ev);
/* r's turn is over: its process exited (ex), or a warm process ended the turn (ex NULL). */
void session__run_ended(struct session_run *r, const struct exec_exit *ex);
/* r could not be given to a process: it ends as an error with code and message. */
void session__run_failed(struct session_run *r, const char *code, const char *message);
/* After a restart: closes runs that were queued or running as failed (server_restart). */
void session__recover_runs(struct session *se);
/* A fork's runs: records (and, for a run the fork cuts, its end) for the new child se, from its
 * parent's run records (borrowed) and the transcript offset the fork was taken at. */
void session__fork_runs(struct session *se, json_t *parent_runs, int64_t at);
/* Stops the active run and the environment (session deleted or server stopping). */
void session__stop_runs(struct session *se);
void session__runs_free(struct session *se);
const char *session__active_run_id(const struct session *se);
/* A run of child `se` ended: the parent's transcript and inbox get a `child` event, and a parent with
 * an agent is woken with a run. Called in the same loop turn as the child's run_completed, so both
 * commit together. */
void session__child_completed(struct session *se, const char *run, const char *status, json_t *result);
/* The parts of a create body every session has: agent, workspace (an existing directory, resolved
 * into ws; "" when agentd makes one), env, tags. NULL, or why the body is refused. */
const char *session__check_create(json_t *body, char ws[PATH_MAX]);
/* Creates and registers a session from a create body (not taken): its streams, first event and
 * record are written (they join the open wait). parent: the session that spawns it, or NULL. 0 with
 * *out, -EINVAL with why (the body), or another negative errno (the workspace could not be made). */
int session__create(struct sessions *s, json_t *body, struct session *parent, struct session **out,
                    const char **why);
/* A child of parent: created like any session from body, its `text` (if any) its first message;
 * the parent's transcript records the spawn. Returns as session__create. */
int session__spawn_child(struct sessions *s, struct session *parent, json_t *body, struct session **out,
                         const char **why);
/* {"children":[public views of the sessions spawned by se]} */
json_t *session__children(struct sessions *s, struct session *se);
/* The environment or the agent's process finished closing (session.c: may free a deleted
 * session). */
void session__env_released(struct session *se);
/* Ends the active run with the error code (agentd failed it: its records cannot be stored). */
void session__fail_run(struct session *se, const char *code, const char *message);
/* Starts the next queued run if none is active and se is not degraded. */
void session__runs_resume(struct session *se);
/* Appends run's current record (NULL: only the active query) to the state stream again. */
void session__rewrite_run(struct session *se, const char *run);

#endif
