/*
 * agent_int — what the adapters share inside src/agent: the vtable, the command builder and the
 * event helpers of the parser core (agent.c). Not for other modules.
 */
#ifndef AGENTD_AGENT_INT_H
#define AGENTD_AGENT_INT_H

#include <jansson.h>
#include <stddef.h>

#include "agent/agent.h"
#include "core/core.h"

struct agent_adapter {
    const char *name;
    const char *program;     /* default binary name, looked up on PATH */
    int runs_self;           /* the program is agentd's own executable (the demo agent) */
    const char *description; /* one line, for lists of agents */
    /* Fills a zeroed cmd through the agent__cmd_* helpers; returns 0 or -EINVAL. The caller has
     * checked that opts->prompt is set and fork implies native_session. */
    int (*command)(const struct agent_run_opts *opts, struct agent_cmd *cmd);
    /* Maps one parsed stdout line (a JSON object, borrowed) onto events through agent__emit and
     * friends. Emitting nothing is allowed: the core then logs the line as not understood. */
    void (*line)(struct agent_parser *p, json_t *obj);
    /* Optional: a stdout line that is not a JSON object (native: it as a string); emitting nothing
     * leaves it to the core, which logs it at level warn. */
    void (*text_line)(struct agent_parser *p, const char *s, size_t n);
    /* Optional: the stdin line that cancels a run (see agent_cancel_line). */
    char *(*cancel_line)(const char *run_id);
    /* Optional: adjusts a fork's copy of the agent's home (see agent_fork_fixup). */
    int (*fork_fixup)(const struct agent_fork *f);

    /* ---- beyond one message (agent.h: "talking to a running agent") ---- */
    unsigned caps;          /* enum agent_cap bits the agent has, or may announce */
    int announces_caps;     /* the program says what it can do (a `capabilities` line) */
    int approvals_per_proc; /* the permission mode is fixed when the process starts */
    int over_http;          /* a local HTTP server: the writer takes requests (agent.h) */
    /* Optional, each the agent's stdin bytes (a line, newline included; free it), or NULL when this
     * process cannot: the next message, steering text, an interrupt, a permission answer. */
    char *(*turn_line)(struct agent_parser *p, const struct agent_run_opts *opts);
    char *(*steer_line)(struct agent_parser *p, const char *run_id, const char *text);
    char *(*interrupt_line)(struct agent_parser *p, const char *run_id);
    char *(*decision_line)(struct agent_parser *p, const char *native_request,
                           const struct agent_decision *d);
};

extern const struct agent_adapter agent__claude, agent__codex, agent__opencode, agent__jsonl, agent__demo;

/* ---- command building (agent.c) ---- */

/* Appends a copy of s to argv / "name=value" to env. */
void agent__arg(struct agent_cmd *cmd, const char *s);
void agent__args(struct agent_cmd *cmd, const char *const *list);
void agent__env(struct agent_cmd *cmd, const char *name, const char *value);
/* Adds the file dir/name; takes ownership of content. */
void agent__file(struct agent_cmd *cmd, const char *dir, const char *name, char *content);
/* Takes ownership of data (len bytes, NUL-terminated). */
void agent__stdin(struct agent_cmd *cmd, char *data, size_t len);
/* opts->base_url with "/v1" appended unless it already ends so; free it. */
char *agent__base_v1(const char *base_url);

/* ---- parser helpers (agent.c) ---- */

/* Adapter scratch state that lives as long as the parser: a JSON object the adapter may use
 * freely (last texts, tool names by id, running totals). Borrowed. */
json_t *agent__state(struct agent_parser *p);
/* The object at key in the state, created empty on first use. Borrowed. */
json_t *agent__state_obj(struct agent_parser *p, const char *key);
/* Delivers ev (takes ownership) with "type" set to type and "native" set to the current line. */
void agent__emit(struct agent_parser *p, const char *type, json_t *ev);
void agent__log(struct agent_parser *p, const char *level, const char *fmt, ...) CORE_PRINTF(3, 4);
void agent__error(struct agent_parser *p, const char *code, const char *message, int retryable);
/* Records the agent's native session id and says so in a log event. */
void agent__session(struct agent_parser *p, const char *id, const char *agent);
/* Delivers the result event (takes ownership of ev), or a warn log if a result was already given. */
void agent__result(struct agent_parser *p, json_t *ev);

/* Sets what the process announced it can do (programs that announce their capabilities). */
void agent__set_caps(struct agent_parser *p, unsigned caps);
/* Writes bytes to the agent's stdin through the installed writer; 0 or -EPIPE without one. */
int agent__write(struct agent_parser *p, const char *data, size_t len);
/* A JSON value as one compact line with its newline (takes j); free the result. */
char *agent__line(json_t *j);

/* Small JSON accessors: the string / number at key, or def / 0 when absent or of another type. */
const char *agent__str(const json_t *obj, const char *key);
/* Joins the "text" of the text blocks of an Anthropic-style content value (string or array);
 * free the result. */
char *agent__content_text(const json_t *content);

#endif
