/*
 * subs_int — the subscription service's internal types, shared by subs.c (the engine: registry,
 * persistence, wakes, deliveries), subs_config.c (a subscription's configuration: checked, parsed,
 * recorded, hashed) and subs_http.c (the HTTP resource). Not for other modules.
 *
 * Ownership: struct subs owns every struct subs_sub (map by id plus a list in creation order);
 * each subscription owns its links, its wake and its in-flight delivery. Engine calls that change
 * anything queue state records in subs->log; the caller hands them to the state stream with
 * subs__flush before answering (so the answer follows the commit). When that write fails, memory
 * is rebuilt from the state stream (subs__reload): no subscription pointer survives a flush.
 */
#ifndef AGENTD_SUBS_INT_H
#define AGENTD_SUBS_INT_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "core/map.h"
#include "subs/subs.h"
#include "subs/subs_lease.h"

struct curlx_http;
struct curlx_http_req;
struct stream_op;

#define SUBS_LEASE_DEFAULT_MS     30000
#define SUBS_LEASE_MIN_MS         1000
#define SUBS_LEASE_MAX_MS         600000
#define SUBS_RETRY_FIRST_MS       1000
#define SUBS_RETRY_MAX_MS         60000
/* One webhook attempt: its deadline, and the most of the receiver's answer that is read. */
#define SUBS_WEBHOOK_TIMEOUT_MS   10000
#define SUBS_WEBHOOK_MAX_RESPONSE 65536

enum subs_type {
    SUBS_WEBHOOK,
    SUBS_PULL_WAKE
};

/* Engine outcomes; subs_http.c maps each to a code of the error table (core/errcode.h). */
enum subs_err {
    SUBS_OK = 0,
    SUBS_E_INVALID,       /* INVALID_REQUEST */
    SUBS_E_URL,           /* WEBHOOK_URL_REJECTED */
    SUBS_E_NOT_FOUND,     /* SUBSCRIPTION_NOT_FOUND */
    SUBS_E_EXISTS,        /* SUBSCRIPTION_ALREADY_EXISTS */
    SUBS_E_TOKEN_INVALID, /* TOKEN_INVALID */
    SUBS_E_TOKEN_EXPIRED, /* TOKEN_EXPIRED */
    SUBS_E_FENCED,        /* FENCED */
    SUBS_E_CLAIMED,       /* ALREADY_CLAIMED */
    SUBS_E_NO_WORK,       /* NO_PENDING_WORK */
    SUBS_E_OFFSET,        /* INVALID_OFFSET */
    SUBS_E_STORE,         /* storage_error */
};

struct subs_link {
    char *path; /* relative stream path, owned */
    unsigned explicit_link : 1, glob_link : 1;
    int64_t acked;          /* last acknowledged offset (inclusive), -1 before the first byte */
    int64_t snapshot;       /* the stream's tail when the open wake began, -1 when not in it */
    struct subs_link *next; /* link order */
};

struct subs_sub {
    struct subs *svc;
    char *id;
    /* configuration (owned strings, NULL when absent) */
    enum subs_type type;
    char *pattern, *webhook_url, *wake_stream, *description;
    char **streams; /* the explicit streams as configured, for the config hash */
    size_t nstreams;
    int64_t lease_ttl_ms;
    int loopback_only; /* http dev URL: deliveries may reach loopback peers only */
    char hash[65];
    char *created_at;
    /* links and the wake */
    struct map links; /* path -> struct subs_link */
    struct subs_link *first, *last;
    struct subs_wake wake;
    /* webhook delivery; memory only (after a restart an open wake is simply delivered again) */
    struct curlx_http_req *inflight;
    int64_t inflight_gen, delivered_gen;
    int failures;
    int64_t retry_at_ms; /* 0: no retry pending */
    struct subs_sub *prev, *next;
};

struct subs {
    uv_loop_t *loop;
    struct streams *ss;
    struct subs_keys *keys;
    struct curlx_http *http; /* webhook deliveries */
    char *base_url;
    struct map by_id;
    struct subs_sub *first, *last;
    struct map known; /* stream paths seen created or growing since start */
    /* Tails of streams not in the registry here (their shard is another node's), as relayed
     * (subs_observe_remote): path -> an int64_t, owned. */
    struct map remote;
    json_t *log;      /* state records not yet appended to SUBS_STATE_STREAM */
    int replaying;    /* applying the state stream: record nothing, deliver nothing */
    int closing;      /* subs_free ran: a late flush callback finds nothing to reload */
    uv_timer_t timer; /* next lease expiry or delivery retry */
    int handles;      /* handles still open (subs_free: s goes with the last) */
    /* the repair of relays lost (subs_repair.c); scan NULL: none */
    int (*scan)(void *arg, const char *prefix, void (*found)(const char *path, int64_t tail, void *farg),
                void *farg);
    void *scan_arg;
    void (*wake_remote)(void *arg, const char *path, const char *text); /* subs_config's */
    void *wake_remote_arg;
    uv_timer_t repair;     /* every SUBS_REPAIR_MS */
    uv_work_t repair_work; /* the scan in the thread pool */
    int repair_busy, repaired;
    char *repair_prefix;
    struct subs_found *found; /* the scan's rows (the worker's while repair_busy) */
    size_t nfound, found_cap;
    int found_rc;
};

struct subs_found {
    char *path;
    int64_t tail;
};

/* ---- configuration (subs_config.c) ---- */
/* Parses a configuration object into a fresh subscription (not registered). Returns NULL or the
 * reason it is invalid. Free the result with subs__sub_free. */
const char *subs__parse_config(json_t *cfg, const char *id, struct subs_sub **out);
/* The configuration as the state stream records it (parsed back by subs__parse_config); a new
 * reference. */
json_t *subs__config_json(const struct subs_sub *sub);

/* ---- engine (subs.c) ---- */
struct subs_sub *subs__find(struct subs *s, const char *id);
void subs__sub_free(struct subs_sub *sub);
/* Registers sub (takes ownership), links its explicit streams and the known streams matching its
 * pattern at their current tails. */
void subs__create(struct subs *s, struct subs_sub *sub);
void subs__delete(struct subs *s, struct subs_sub *sub);
/* Adds an explicit link (acked at the current tail if new) / removes the explicit link. */
void subs__link_explicit(struct subs_sub *sub, const char *path);
void subs__unlink_explicit(struct subs_sub *sub, const char *path);

struct subs_ack {
    const char *stream;
    const char *offset; /* as sent */
};
/* Callback (webhook), ack or release (pull-wake, release=1): token check, fencing, acks, lease,
 * and with done (or release) closing the wake and opening the next if work is pending. */
enum subs_err subs__settle(struct subs_sub *sub, const char *token, size_t token_len, json_t *generation,
                           const char *wake_id, const struct subs_ack *acks, size_t nacks, int done,
                           int release, int *next_wake, const char **why);
/* Claims the subscription's wake for worker; on 0 *token receives a callback token (free()). */
enum subs_err subs__claim(struct subs_sub *sub, const char *worker, char **token, const char **why);

/* JSON views (new references). */
json_t *subs__describe(struct subs_sub *sub); /* GET/PUT body */
json_t *subs__stream_infos(struct subs_sub *sub, int with_tails);
char *subs__action_url(struct subs *s, const char *id, const char *action); /* free() */
char *subs__jwks_url(struct subs *s);                                       /* free() */

/* Appends the queued state records. With op, op->cb runs after the commit. Returns 1 when queued,
 * 0 when there was nothing to write (op untouched), or -EIO when the append was refused (then the
 * service has already reloaded, see subs__reload). */
int subs__flush(struct subs *s, struct stream_op *op);
/* After a state write failed: rebuilds every subscription from the state stream, so that memory
 * holds what is stored and nothing the failed write held. Every struct subs_sub is freed. The
 * owner of a flush op whose commit failed calls it (subs__flush's own ops do). */
void subs__reload(struct subs *s);
/* Re-arms the service timer for the earliest lease deadline or retry. */
void subs__arm(struct subs *s);
/* Opens a wake for each subscription with work pending, then records and re-arms (a start's resume,
 * a repair's baseline). */
void subs__wake_all(struct subs *s);
/* The tail relayed for a stream the registry does not hold: the last known, and for a new one the
 * stream is known (a later subscription's glob links it at this tail). */
void subs__remote_tail(struct subs *s, const char *path, int64_t tail);

/* ---- the repair of lost relays (subs_repair.c) ---- */
#define SUBS_REPAIR_MS 5000
/* Starts the first scan (the baseline: tails and known streams, nothing linked anew) and the timer
 * of the next ones (each one: streams new or grown since, as if relayed). No-op without scan. */
void subs__repair_start(struct subs *s);
/* Closes the timer (s->handles counts it). */
void subs__repair_stop(struct subs *s);
/* A handle of the service closed (s->handles counts them); subs__release: s is freed once subs_free
 * ran, every handle closed and no scan runs. */
void subs__handle_closed(uv_handle_t *h);
void subs__release(struct subs *s);

#endif
