/*
 * session_int.h — what session.c and session_http.c share. Not for other modules.
 */
#ifndef AGENTD_SESSION_INT_H
#define AGENTD_SESSION_INT_H

#include <jansson.h>

#include "core/map.h"
#include "session/session.h"

#define SESSION_ID_LEN 24
#define SESSION_NLANG 3
/* Durable records with everything needed after a restart (environment values included); under
 * __agentd/, which the HTTP stream resource does not serve. */
#define SESSION_REGISTRY_STREAM "__agentd/sessions"
/* The public State Protocol feed of the session list. */
#define SESSION_FEED_STREAM "sessions"

struct runtime;

struct session {
    char id[SESSION_ID_LEN + 1];
    char *agent;
    char *workspace;
    json_t *tags;  /* array of strings */
    json_t *env;   /* object of strings, as the client declared it */
    json_t *shares; /* array of {"token","created_at"}: read-only access to this session's streams */
    char **envp;   /* the runtimes' environment, "K=V", NULL-terminated */
    int64_t created_ms;
    int owns_workspace; /* created by agentd under DATA/workspaces */
    int deleted;
    int closing;   /* runtime closes in flight (+1 while closing) */
    struct runtime *rt[SESSION_NLANG];
    struct sessions *registry;
};

struct sessions {
    uv_loop_t *loop;
    struct streams *ss;
    struct sessions_config cfg;
    char *data_dir;
    struct map by_id;
    sessions_mcp_cb mcp_cb;
    void *mcp_arg;
    size_t live;  /* sessions not yet freed (deleted ones wait for their runtimes to close) */
    int freeing;  /* sessions_free ran: the last session__free frees the registry */
};

void session__ensure_stream(struct sessions *s, const char *path);
void session__delete_stream(struct sessions *s, const char *path);
/* Creates `to` as a Durable Streams fork of `from` at offset `at` (nothing is copied). */
void session__fork_stream(struct sessions *s, const char *from, const char *to, int64_t at);
void session__append(struct sessions *s, const char *path, json_t *msg); /* takes msg */
void session__event(struct session *se, json_t *ev);                      /* takes ev */
json_t *session__public(const struct session *se);
json_t *session__text(const char *p, size_t len);
void session__publish(struct sessions *s, struct session *se, const char *operation);
void session__register(struct sessions *s, struct session *se);
void session__close_runtimes(struct session *se);
void session__new_id(char out[SESSION_ID_LEN + 1]);

#endif
