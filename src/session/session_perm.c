/*
 * session_perm — a person in the loop for tool calls: each session's permission policy, the
 * requests its agent makes before using a tool, and their answers, all of it durable.
 *
 * The policy (`"permissions"` in the create body and in PATCH /v1/sessions/<id>) is
 *
 *     {"mode": "allow"|"ask"|"deny", "allow": [rules], "deny": [rules], "timeout_ms": N|null}
 *
 * and decides a call in this order: a matching deny rule denies, a matching allow rule allows, else
 * the mode: allow, deny, or ask — a request that waits for a client's answer, denied after
 * timeout_ms when one is set. A rule names a tool (`Read`, `mcp__rt__runtime`; a glob: `mcp__*`)
 * and, for tools that run a command, optionally a glob on the command (`Bash(git status*)`): the
 * input's "command" (Claude Code, OpenCode, jsonl agents), "cmd" (Codex) or "code" (agentd's
 * runtime tool). "allow" with no deny rule is today's behaviour and the default: the agent is then
 * not asked to ask at all.
 *
 * Every request the agent (or agentd's MCP tool, for the agent's runtime calls) makes is written to
 * the transcript as `permission_request` {request, run?, tool, input, suggestions?, tool_use_id?}
 * and its answer as `permission_response` {request, run?, decision, by, message?, rule?,
 * updated_input?, remember?}, by "policy", "user", "timeout" or "expired". A request that waits is
 * also in the state stream, `{"type":"permission","key":<request>,"value":{...}}` inserted while
 * pending and deleted once answered, so that a client following the state sees what waits.
 *
 * A client's answer is written first and delivered to the agent only once it has committed (the
 * HTTP layer's wait, at commit: it survives kill -9), so no tool starts on a decision that could be
 * lost; if it cannot be stored the request waits again. A request ends as expired when whatever
 * asked goes away first: its run ends (crash, cancel, interrupt), the MCP call is abandoned, or
 * agentd restarts (session__perms_recover). Answering it then is a conflict, like answering twice.
 *
 * Ownership: a struct session_perm belongs to its session's list from session__perm_ask until it
 * is answered or expired; its timeout timer is allocated apart and freed by its close callback, so
 * that the request can go at once. The asker's callback runs at most once and never after
 * session__perm_cancel.
 */
#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "session/session_int.h"

#define PERM_RULE_MAX  1024 /* bytes of one rule */
#define PERM_RULES_MAX 256  /* rules per list */
#define PERM_ID_BYTES  8

struct perm__timer {
    uv_timer_t t;
    struct session_perm *p; /* NULL once the request is gone */
};

struct session_perm {
    char id[SESSION_PERM_ID_LEN + 1];
    struct session *se;
    char run[SESSION_RUN_ID_LEN + 1]; /* "" when no run asked */
    json_t *req;                      /* {tool, input, suggestions?, tool_use_id?} */
    session_perm_cb cb;               /* NULL once the asker is gone */
    void *arg;
    int answering;       /* a client's answer waits for its commit */
    json_t *answer;      /* that answer: {decision, message?, updated_input?} */
    char *remembered;    /* the rule that answer added (removed again if it is not stored) */
    int64_t deadline_ms; /* 0: no timeout */
    struct perm__timer *timer;
    struct session_perm *next;
};

/* ================= the policy ================= */

static const char *perm__check_rules(json_t *rules)
{
    size_t i;
    json_t *r;
    if (!json_is_array(rules) || json_array_size(rules) > PERM_RULES_MAX)
        return "allow and deny are arrays of at most 256 rules";
    json_array_foreach (rules, i, r) {
        const char *s = json_string_value(r);
        size_t n = s ? strlen(s) : 0;
        const char *paren = s ? strchr(s, '(') : NULL;
        if (n == 0 || n > PERM_RULE_MAX || paren == s || (paren && s[n - 1] != ')'))
            return "a rule is a tool name (a glob), optionally with a command glob in parentheses: "
                   "\"Read\", \"mcp__rt__runtime\", \"Bash(git status*)\"";
    }
    return NULL;
}

int session__policy_parse(json_t *j, const json_t *base, json_t **out, const char **why)
{
    json_t *p = base ? json_deep_copy(base)
                     : json_pack("{s:s, s:[], s:[], s:n}", "mode", "allow", "allow", "deny", "timeout_ms");
    const char *k;
    json_t *v;
    *why = NULL;
    if (j && !json_is_null(j) && !json_is_object(j))
        *why = "permissions must be an object: mode, allow, deny, timeout_ms";
    json_object_foreach (json_is_object(j) ? j : NULL, k, v) {
        if (*why)
            break;
        if (!strcmp(k, "mode")) {
            const char *m = json_string_value(v);
            if (m == NULL || (strcmp(m, "allow") && strcmp(m, "ask") && strcmp(m, "deny")))
                *why = "permissions.mode must be allow, ask or deny";
        } else if (!strcmp(k, "allow") || !strcmp(k, "deny")) {
            *why = perm__check_rules(v);
        } else if (!strcmp(k, "timeout_ms")) {
            if (!json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 1))
                *why = "permissions.timeout_ms must be a positive integer (milliseconds) or null";
        } else {
            *why = "permissions takes mode, allow, deny and timeout_ms";
        }
        if (*why == NULL)
            json_object_set(p, k, v);
    }
    if (*why) {
        json_decref(p);
        return -EINVAL;
    }
    *out = p;
    return 0;
}

/* The session's policy (borrowed): its own, or the default (allow). */
static const json_t *perm__policy(const struct session *se)
{
    static json_t *def;
    if (def == NULL) {
        const char *why;
        (void)!session__policy_parse(NULL, NULL, &def, &why);
    }
    return se->opts.permissions ? se->opts.permissions : def;
}

json_t *session__policy(const struct session *se) { return json_deep_copy(perm__policy(se)); }

/* A policy that may refuse needs an agent that asks first (or may: a program announces it). */
int session__policy_possible(const struct agent_adapter *adapter, const json_t *policy, const char **why)
{
    int asks = strcmp(json_string_value(json_object_get(policy, "mode")), "allow") != 0 ||
               json_array_size(json_object_get(policy, "deny")) > 0;
    if (!asks || adapter == NULL || (agent_adapter_caps(adapter) & AGENT_CAP_APPROVALS))
        return 1;
    *why = "this agent cannot ask before using a tool (approvals: see GET /v1/agents): its permissions can "
           "only be mode allow without deny rules";
    return 0;
}

int session__policy_asks(const struct session *se)
{
    const json_t *p = perm__policy(se);
    return strcmp(json_string_value(json_object_get(p, "mode")), "allow") != 0 ||
           json_array_size(json_object_get(p, "deny")) > 0;
}

/* The command a rule's parentheses are matched against, or NULL for tools that run none. */
static const char *perm__command(const json_t *input)
{
    static const char *const keys[] = {"command", "cmd", "code"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(keys); i++)
        if (json_is_string(json_object_get(input, keys[i])))
            return json_string_value(json_object_get(input, keys[i]));
    return NULL;
}

static int perm__rule_matches(const char *rule, const char *tool, const json_t *input)
{
    char buf[PERM_RULE_MAX + 1];
    snprintf(buf, sizeof buf, "%s", rule);
    char *paren = strchr(buf, '(');
    if (paren)
        *paren = '\0';
    if (fnmatch(buf, tool, 0) != 0)
        return 0;
    if (paren == NULL)
        return 1;
    buf[strlen(rule) - 1] = '\0'; /* the closing parenthesis (checked when the policy was parsed) */
    const char *cmd = perm__command(input);
    return cmd && fnmatch(paren + 1, cmd, 0) == 0;
}

/* The first rule of list that matches, or NULL. */
static const char *perm__match(const json_t *policy, const char *list, const char *tool, const json_t *input)
{
    size_t i;
    json_t *r;
    json_array_foreach (json_object_get(policy, list), i, r)
        if (perm__rule_matches(json_string_value(r), tool, input))
            return json_string_value(r);
    return NULL;
}

int session__policy_decide(const json_t *policy, const char *tool, const json_t *input, const char **rule)
{
    if ((*rule = perm__match(policy, "deny", tool, input)) != NULL)
        return 0;
    if ((*rule = perm__match(policy, "allow", tool, input)) != NULL)
        return 1;
    const char *mode = json_string_value(json_object_get(policy, "mode"));
    return !strcmp(mode, "allow") ? 1 : !strcmp(mode, "deny") ? 0 : -1;
}

/* ================= records ================= */

static void perm__state(struct session_perm *p, const char *operation)
{
    char path[128];
    session__stream_path(p->se->id, "state", path);
    json_t *rec = json_pack("{s:s, s:s, s:{s:s}}", "type", "permission", "key", p->id, "headers", "operation",
                            operation);
    if (!strcmp(operation, "insert")) {
        json_t *v =
            json_pack("{s:s, s:O, s:O, s:I}", "request", p->id, "tool", json_object_get(p->req, "tool"),
                      "input", json_object_get(p->req, "input"), "created_at", (json_int_t)clock_wall_ms());
        if (p->run[0])
            json_object_set_new(v, "run", json_string(p->run));
        if (p->deadline_ms)
            json_object_set_new(v, "expires_at", json_integer(p->deadline_ms));
        json_object_set_new(rec, "value", v);
    }
    session__write(p->se->registry, p->se, SESSION_W_RUN, NULL, path, rec);
}

/* The transcript's permission_request (ev: the request's fields, taken). */
static void perm__request_event(struct session_perm *p, json_t *native)
{
    json_t *ev = json_deep_copy(p->req);
    json_object_set_new(ev, "type", json_string("permission_request"));
    json_object_set_new(ev, "request", json_string(p->id));
    if (p->run[0])
        json_object_set_new(ev, "run", json_string(p->run));
    if (native)
        json_object_set(ev, "native", native);
    session__event(p->se, ev);
}

static void perm__response_event(struct session_perm *p, const struct session_decision *d, const char *rule,
                                 const char *remember)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s}", "type", "permission_response", "request", p->id,
                           "decision", d->allow ? "allow" : "deny", "by", d->by);
    if (p->run[0])
        json_object_set_new(ev, "run", json_string(p->run));
    if (d->message)
        json_object_set_new(ev, "message", json_string(d->message));
    if (rule)
        json_object_set_new(ev, "rule", json_string(rule));
    if (d->updated_input)
        json_object_set(ev, "updated_input", (json_t *)d->updated_input);
    if (remember)
        json_object_set_new(ev, "remember", json_string(remember));
    session__event(p->se, ev);
}

/* ================= the list ================= */

static void perm__timer_closed(uv_handle_t *h) { free(h->data); }

/* Unlinks p, remembers how it ended, and frees it. */
static void perm__free(struct session_perm *p, const char *outcome)
{
    struct session *se = p->se;
    for (struct session_perm **pp = &se->perms; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (se->perms_done == NULL)
        se->perms_done = json_object();
    json_object_set_new(se->perms_done, p->id, json_string(outcome));
    if (p->timer) {
        p->timer->p = NULL;
        uv_close((uv_handle_t *)&p->timer->t, perm__timer_closed);
    }
    json_decref(p->req);
    json_decref(p->answer);
    free(p->remembered);
    free(p);
}

static struct session_perm *perm__find(const struct session *se, const char *id)
{
    for (struct session_perm *p = se->perms; p; p = p->next)
        if (!strcmp(p->id, id))
            return p;
    return NULL;
}

/* Ends p with d: recorded (unless a client's answer already is), told to its asker, freed. */
static void perm__end(struct session_perm *p, const struct session_decision *d, int record)
{
    session_perm_cb cb = p->cb;
    void *arg = p->arg;
    json_t *req = json_incref(p->req);
    if (record) {
        perm__response_event(p, d, NULL, NULL);
        perm__state(p, "delete");
    }
    perm__free(p, !strcmp(d->by, "expired") ? "expired" : d->allow ? "allow" : "deny");
    struct session_decision told = *d;
    told.request = req;
    if (cb)
        cb(arg, &told);
    json_decref(req);
}

static void perm__timeout(uv_timer_t *t)
{
    struct perm__timer *pt = t->data;
    struct session_perm *p = pt->p;
    if (p == NULL || p->answering)
        return;
    char msg[96];
    snprintf(msg, sizeof msg, "no answer within the session's timeout (%lld ms)",
             (long long)json_integer_value(json_object_get(perm__policy(p->se), "timeout_ms")));
    struct session_decision d = {.allow = 0, .by = "timeout", .message = msg};
    perm__end(p, &d, 1);
}

static void perm__arm(struct session_perm *p)
{
    if (p->deadline_ms == 0)
        return;
    if (p->timer == NULL) {
        p->timer = xcalloc(1, sizeof *p->timer);
        p->timer->p = p;
        uv_timer_init(p->se->registry->loop, &p->timer->t);
        p->timer->t.data = p->timer;
    }
    int64_t left = p->deadline_ms - clock_wall_ms();
    uv_timer_start(&p->timer->t, perm__timeout, left > 0 ? (uint64_t)left : 0, 0);
}

/* ================= asking ================= */

struct session_perm *session__perm_ask(struct session *se, const char *run, json_t *req, json_t *native,
                                       session_perm_cb cb, void *arg)
{
    struct session_perm *p = xcalloc(1, sizeof *p);
    session__random_id(p->id, sizeof p->id, "perm_");
    p->se = se;
    snprintf(p->run, sizeof p->run, "%s", run ? run : "");
    p->req = req;
    p->cb = cb;
    p->arg = arg;
    p->next = se->perms;
    se->perms = p;
    perm__request_event(p, native);
    const json_t *policy = perm__policy(se);
    const char *rule = NULL, *tool = json_string_value(json_object_get(req, "tool"));
    int verdict = session__policy_decide(policy, tool ? tool : "", json_object_get(req, "input"), &rule);
    if (verdict >= 0) {
        struct session_decision d = {.allow = verdict, .by = "policy"};
        char *msg = verdict ? NULL
                    : rule  ? xasprintf("denied by the session's permission rule %s", rule)
                            : xstrdup("denied: the session's permission mode is deny");
        d.message = msg;
        d.request = req;
        perm__response_event(p, &d, rule, NULL);
        json_incref(req);
        perm__free(p, verdict ? "allow" : "deny");
        cb(arg, &d);
        json_decref(req);
        free(msg);
        return NULL;
    }
    json_int_t timeout = json_integer_value(json_object_get(policy, "timeout_ms"));
    p->deadline_ms = timeout > 0 ? clock_wall_ms() + timeout : 0;
    perm__state(p, "insert");
    perm__arm(p);
    return p;
}

void session__perm_cancel(struct session_perm *p)
{
    if (p == NULL)
        return;
    p->cb = NULL;
    if (p->answering)
        return; /* its answer is being stored: it ends then, with nobody to tell */
    struct session_decision d = {.allow = 0, .by = "expired", .message = "whatever asked went away first"};
    perm__end(p, &d, 1);
}

void session__perms_expire(struct session *se, const char *run, const char *why)
{
    /* From the head again after each one: what the askers do when told may change the list. */
    for (struct session_perm *p = se->perms; p;) {
        if ((run && strcmp(p->run, run)) || (p->answering && p->cb == NULL)) {
            p = p->next;
            continue;
        }
        struct session_decision d = {.allow = 0, .by = "expired", .message = why, .request = p->req};
        if (p->answering) { /* the client's answer is recorded already: only the asker hears it */
            session_perm_cb cb = p->cb;
            p->cb = NULL;
            cb(p->arg, &d);
        } else {
            perm__end(p, &d, 1);
        }
        p = se->perms;
    }
}

/* ================= answering ================= */

/* Checks a client's answer: {"decision", "message"?, "updated_input"?, "remember"?}. */
static const char *perm__check_answer(json_t *b)
{
    const char *dec = json_string_value(json_object_get(b, "decision"));
    json_t *msg = json_object_get(b, "message"), *upd = json_object_get(b, "updated_input"),
           *rem = json_object_get(b, "remember");
    if (dec == NULL || (strcmp(dec, "allow") && strcmp(dec, "deny")))
        return "decision must be allow or deny";
    if (msg && !json_is_null(msg) && !json_is_string(msg))
        return "message must be a string";
    if (upd && !json_is_null(upd) && (!json_is_object(upd) || strcmp(dec, "allow")))
        return "updated_input must be an object, with decision allow";
    if (rem && !json_is_null(rem) && (!json_is_string(rem) || strcmp(json_string_value(rem), "session")))
        return "remember must be \"session\"";
    if (rem && !json_is_null(rem) && strcmp(dec, "allow"))
        return "remember goes with decision allow";
    return NULL;
}

/* The allow rule that remembers p's call: the tool, and the exact command for tools that run one. */
static char *perm__rule_for(const struct session_perm *p)
{
    const char *tool = json_string_value(json_object_get(p->req, "tool"));
    const char *cmd = perm__command(json_object_get(p->req, "input"));
    if (cmd == NULL)
        return xstrdup(tool ? tool : "*");
    struct buf b = {0};
    buf_printf(&b, "%s(", tool ? tool : "*");
    for (const char *c = cmd; *c; c++) { /* the command taken literally: its glob characters escaped */
        if (strchr("*?[\\", *c))
            buf_puts(&b, "\\");
        buf_append(&b, c, 1);
    }
    buf_puts(&b, ")");
    return b.p;
}

/* Adds an allow rule to the session's policy (its record follows with the session's publish). */
static void perm__remember(struct session *se, const char *rule)
{
    if (se->opts.permissions == NULL) {
        const char *why;
        (void)!session__policy_parse(NULL, NULL, &se->opts.permissions, &why);
    }
    json_array_append_new(json_object_get(se->opts.permissions, "allow"), json_string(rule));
    session__publish(se->registry, se, "update");
}

static void perm__forget(struct session *se, const char *rule)
{
    json_t *allow = json_object_get(se->opts.permissions, "allow");
    for (size_t i = json_array_size(allow); i-- > 0;)
        if (!strcmp(json_string_value(json_array_get(allow, i)), rule)) {
            json_array_remove(allow, i);
            break;
        }
}

int session__perm_answer(struct session *se, const char *id, json_t *body, json_t **answer, const char **why)
{
    struct session_perm *p = perm__find(se, id);
    if (p == NULL || p->answering) {
        const char *done = json_string_value(json_object_get(se->perms_done, id));
        *why = p                          ? "an answer to this request is being stored"
               : !done                    ? "no such permission request"
               : !strcmp(done, "expired") ? "the request expired: what asked is gone"
                                          : "the request was answered already";
        return p || done ? -EALREADY : -ENOENT;
    }
    if ((*why = perm__check_answer(body)) != NULL)
        return -EINVAL;
    int allow = !strcmp(json_string_value(json_object_get(body, "decision")), "allow");
    const char *remember = json_string_value(json_object_get(body, "remember"));
    p->answer = json_deep_copy(body);
    p->answering = 1;
    if (p->timer)
        uv_timer_stop(&p->timer->t);
    struct session_decision d = {.allow = allow,
                                 .by = "user",
                                 .message = json_string_value(json_object_get(body, "message")),
                                 .updated_input = json_object_get(body, "updated_input")};
    if (remember) {
        p->remembered = perm__rule_for(p);
        perm__remember(se, p->remembered);
    }
    perm__response_event(p, &d, p->remembered, remember);
    perm__state(p, "delete");
    *answer =
        json_pack("{s:s, s:s, s:s}", "request", p->id, "decision", allow ? "allow" : "deny", "by", "user");
    if (p->remembered)
        json_object_set_new(*answer, "rule", json_string(p->remembered));
    return 0;
}

void session__perm_answered(struct session *se, const char *id, int rc)
{
    struct session_perm *p = perm__find(se, id);
    if (p == NULL || !p->answering)
        return;
    if (rc != 0 && p->cb) { /* not stored: the request waits again, as if unanswered */
        p->answering = 0;
        if (p->remembered)
            perm__forget(se, p->remembered);
        free(p->remembered);
        p->remembered = NULL;
        json_decref(p->answer);
        p->answer = NULL;
        perm__arm(p);
        return;
    }
    json_t *a = p->answer;
    p->answer = NULL;
    struct session_decision d = {.allow = !strcmp(json_string_value(json_object_get(a, "decision")), "allow"),
                                 .by = "user",
                                 .message = json_string_value(json_object_get(a, "message")),
                                 .updated_input = json_object_get(a, "updated_input")};
    perm__end(p, &d, 0);
    json_decref(a);
}

/* ================= listing, recovery ================= */

json_t *session__perms_list(const struct session *se)
{
    json_t *list = json_array();
    for (const struct session_perm *p = se->perms; p; p = p->next) {
        if (p->answering)
            continue;
        json_t *v = json_deep_copy(p->req);
        json_object_set_new(v, "request", json_string(p->id));
        if (p->run[0])
            json_object_set_new(v, "run", json_string(p->run));
        if (p->deadline_ms)
            json_object_set_new(v, "expires_at", json_integer(p->deadline_ms));
        json_array_insert_new(list, 0, v); /* oldest first */
    }
    return list;
}

size_t session__perms_pending(const struct session *se)
{
    size_t n = 0;
    for (const struct session_perm *p = se->perms; p; p = p->next)
        n += !p->answering;
    return n;
}

void session__perms_recover(struct session *se, json_t *msgs)
{
    json_t *open = json_object();
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *key = json_string_value(json_object_get(m, "key"));
        const char *op = json_string_value(json_object_get(json_object_get(m, "headers"), "operation"));
        if (key == NULL || op == NULL ||
            strcmp(json_string_value(json_object_get(m, "type")) ?: "", "permission"))
            continue;
        if (!strcmp(op, "insert"))
            json_object_set(open, key, json_object_get(m, "value"));
        else
            json_object_del(open, key);
        if (se->perms_done == NULL)
            se->perms_done = json_object();
        json_object_set_new(se->perms_done, key, json_string("answered"));
    }
    /* What was still pending lost its asker with the previous process: it expires, recorded. */
    const char *key;
    json_t *v;
    json_object_foreach (open, key, v) {
        if (strlen(key) != SESSION_PERM_ID_LEN)
            continue;
        struct session_perm *p = xcalloc(1, sizeof *p);
        memcpy(p->id, key, sizeof p->id);
        p->se = se;
        snprintf(p->run, sizeof p->run, "%s", json_string_value(json_object_get(v, "run")) ?: "");
        p->req = json_pack("{s:O?, s:O?}", "tool", json_object_get(v, "tool"), "input",
                           json_object_get(v, "input"));
        p->next = se->perms;
        se->perms = p;
        struct session_decision d = {
            .allow = 0, .by = "expired", .message = "agentd restarted while it waited"};
        perm__end(p, &d, 1);
    }
    json_decref(open);
}

void session__perms_free(struct session *se)
{
    while (se->perms) {
        se->perms->cb = NULL;
        perm__free(se->perms, "expired");
    }
    json_decref(se->perms_done);
    se->perms_done = NULL;
}
