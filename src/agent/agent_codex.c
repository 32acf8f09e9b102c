/*
 * agent_codex.c — the codex adapter: `codex exec --json --skip-git-repo-check ... -` with the
 * prompt on stdin ("-"), `exec ... resume ID -` to continue a thread, `exec ... fork ID -` to
 * branch one. The model provider and agentd's MCP server go in $CODEX_HOME/config.toml, which
 * the caller writes from cmd->files.
 *
 * exec --json lines (captures codex-*.jsonl): thread.started{thread_id} names the session;
 * item.started / item.completed carry agent_message, reasoning, command_execution, mcp_tool_call,
 * file_change, web_search, todo_list and error items; turn.completed{usage} ends the run with no
 * text of its own (the answer is the last agent_message); turn.failed and error report failures.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_int.h"

/* ================= command ================= */

/* Appends s as a TOML basic string, quotes included. */
static void toml_string(struct buf *b, const char *s)
{
    buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            buf_printf(b, "\\u%04x", c);
        else
            buf_append(b, s, 1);
    }
    buf_puts(b, "\"");
}

/* config.toml for this run, or NULL when there is nothing to configure; free it. */
static char *codex_config(const struct agent_run_opts *o)
{
    if (o->base_url == NULL && o->mcp == NULL)
        return NULL;
    struct buf b = {0};
    buf_puts(&b, "# Written by agentd for this session; rewritten before every run.\n");
    if (o->base_url) {
        char *v1 = agent__base_v1(o->base_url);
        buf_puts(&b,
                 "model_provider = \"agentd\"\n\n[model_providers.agentd]\nname = \"agentd\"\nbase_url = ");
        toml_string(&b, v1);
        buf_puts(&b, "\nwire_api = \"responses\"\n"); /* codex rejects "chat" */
        if (o->api_key)
            buf_puts(&b, "env_key = \"AGENTD_MODEL_API_KEY\"\n");
        free(v1);
    }
    if (o->mcp) {
        buf_puts(&b, "\n[mcp_servers." AGENT_MCP_SERVER "]\n");
        if (o->mcp->url) {
            buf_puts(&b, "url = ");
            toml_string(&b, o->mcp->url);
        } else {
            buf_puts(&b, "command = ");
            toml_string(&b, o->mcp->command[0]);
            buf_puts(&b, "\nargs = [");
            for (size_t i = 1; o->mcp->command[i]; i++) {
                buf_puts(&b, i > 1 ? ", " : "");
                toml_string(&b, o->mcp->command[i]);
            }
            buf_puts(&b, "]");
        }
        buf_puts(&b, "\n");
    }
    return b.p;
}

static int codex_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    char *config = codex_config(o);
    if (config && o->home == NULL) {
        free(config);
        return -EINVAL;
    }
    agent__arg(cmd, o->program ? o->program : "codex");
    agent__args(cmd, (const char *const[]){"exec", "--json", "--skip-git-repo-check", NULL});
    if (o->bypass_permissions)
        agent__arg(cmd, "--dangerously-bypass-approvals-and-sandbox");
    if (o->model)
        agent__args(cmd, (const char *const[]){"-m", o->model, NULL});
    agent__args(cmd, o->extra_args);
    if (o->native_session)
        agent__args(cmd, (const char *const[]){o->fork ? "fork" : "resume", o->native_session, NULL});
    agent__arg(cmd, "-"); /* the prompt is read from stdin */
    agent__stdin(cmd, xstrdup(o->prompt), strlen(o->prompt));

    if (o->home) {
        char *codex_home = xasprintf("%s/.codex", o->home);
        agent__env(cmd, "HOME", o->home);
        agent__env(cmd, "CODEX_HOME", codex_home); /* threads live there: resume needs it */
        if (config)
            agent__file(cmd, codex_home, "config.toml", config);
        free(codex_home);
    }
    if (o->api_key)
        agent__env(cmd, "AGENTD_MODEL_API_KEY", o->api_key);
    return 0;
}

/* ================= exec --json ================= */

/* Tool-like items: what pre_tool calls them and what their input is. */
static json_t *tool_input(json_t *item, const char *type, char **name)
{
    if (strcmp(type, "command_execution") == 0) {
        *name = xstrdup("command_execution");
        return json_pack("{s:O?}", "command", json_object_get(item, "command"));
    }
    if (strcmp(type, "mcp_tool_call") == 0) {
        const char *server = agent__str(item, "server"), *tool = agent__str(item, "tool");
        *name = xasprintf("mcp__%s__%s", server ? server : "?", tool ? tool : "?");
        json_t *args = json_object_get(item, "arguments");
        return args ? json_incref(args) : json_object();
    }
    if (strcmp(type, "file_change") == 0) {
        *name = xstrdup("file_change");
        return json_pack("{s:O?}", "changes", json_object_get(item, "changes"));
    }
    if (strcmp(type, "web_search") == 0) {
        *name = xstrdup("web_search");
        return json_pack("{s:O?}", "query", json_object_get(item, "query"));
    }
    return NULL;
}

/* The output text and error flag of a completed tool-like item. */
static char *tool_output(json_t *item, const char *type, int *is_error)
{
    const char *status = agent__str(item, "status");
    *is_error = status && strcmp(status, "failed") == 0;
    if (strcmp(type, "command_execution") == 0) {
        json_t *code = json_object_get(item, "exit_code");
        *is_error |= json_is_integer(code) && json_integer_value(code) != 0;
        const char *out = agent__str(item, "aggregated_output");
        return xstrdup(out ? out : "");
    }
    if (strcmp(type, "mcp_tool_call") == 0) {
        json_t *err = json_object_get(item, "error");
        if (err && !json_is_null(err)) {
            *is_error = 1;
            const char *m = agent__str(err, "message");
            return xstrdup(m ? m : json_is_string(err) ? json_string_value(err) : "error");
        }
        return agent__content_text(json_object_get(json_object_get(item, "result"), "content"));
    }
    return xstrdup(status ? status : "");
}

static void on_item(struct agent_parser *p, json_t *line, const char *phase)
{
    json_t *item = json_object_get(line, "item");
    const char *type = agent__str(item, "type"), *id = agent__str(item, "id");
    if (type == NULL)
        return;
    int completed = strcmp(phase, "item.completed") == 0;
    char *name = NULL;
    json_t *input = tool_input(item, type, &name);
    if (input) {
        json_t *started = agent__state_obj(p, "started");
        int seen = id && json_object_get(started, id) != NULL;
        if (!seen) {
            /* An item may complete without a started line: its one line gives both events. */
            agent__emit(p, "pre_tool", json_pack("{s:s?, s:s, s:O}", "id", id, "name", name, "input", input));
            if (id)
                json_object_set_new(started, id, json_true());
        }
        if (completed) {
            int is_error;
            char *out = tool_output(item, type, &is_error);
            agent__emit(p, "post_tool",
                        json_pack("{s:s?, s:s, s:s, s:b}", "id", id, "name", name, "output", out, "is_error",
                                  is_error));
            free(out);
            if (id)
                json_object_del(started, id);
        } else if (seen) {
            agent__log(p, "debug", "codex %s %s", phase, type);
        }
        json_decref(input);
        free(name);
        return;
    }
    if (!completed) {
        agent__log(p, "debug", "codex %s %s", phase, type);
    } else if (strcmp(type, "agent_message") == 0 || strcmp(type, "reasoning") == 0) {
        const char *text = agent__str(item, "text");
        int thinking = type[0] == 'r';
        agent__emit(p, "message",
                    json_pack("{s:s, s:s?, s:[{s:s, s:s}]}", "role", "assistant", "id", id, "content", "type",
                              thinking ? "thinking" : "text", "text", text ? text : ""));
        if (!thinking)
            json_object_set_new(agent__state(p), "last_text", json_string(text ? text : ""));
    } else if (strcmp(type, "error") == 0) {
        const char *m = agent__str(item, "message");
        agent__log(p, "warn", "codex: %s", m ? m : "error item");
    } else {
        agent__log(p, "info", "codex item %s", type);
    }
}

static void codex_line(struct agent_parser *p, json_t *line)
{
    const char *type = agent__str(line, "type");
    if (type == NULL)
        return;
    if (strcmp(type, "thread.started") == 0 && agent__str(line, "thread_id")) {
        agent__session(p, agent__str(line, "thread_id"), "codex");
    } else if (strncmp(type, "item.", 5) == 0) {
        on_item(p, line, type);
    } else if (strcmp(type, "turn.started") == 0) {
        agent__log(p, "debug", "codex turn started");
    } else if (strcmp(type, "turn.completed") == 0) {
        json_t *u = json_object_get(line, "usage");
        json_t *usage = json_pack("{s:O?, s:O?, s:O?}", "input_tokens", json_object_get(u, "input_tokens"),
                                  "output_tokens", json_object_get(u, "output_tokens"),
                                  "cache_read_input_tokens", json_object_get(u, "cached_input_tokens"));
        const char *text = agent__str(agent__state(p), "last_text");
        agent__result(p,
                      json_pack("{s:b, s:s, s:o}", "is_error", 0, "text", text ? text : "", "usage", usage));
    } else if (strcmp(type, "turn.failed") == 0) {
        const char *m = agent__str(json_object_get(line, "error"), "message");
        agent__error(p, "agent_error", m ? m : "turn failed", 0);
        agent__result(p, json_pack("{s:b, s:s}", "is_error", 1, "text", m ? m : "turn failed"));
    } else if (strcmp(type, "error") == 0) {
        const char *m = agent__str(line, "message");
        m = m ? m : "error";
        if (strncmp(m, "Reconnecting", 12) == 0) /* a stream retry, not yet a failure */
            agent__log(p, "warn", "codex: %s", m);
        else
            agent__error(p, "agent_error", m, 0);
    }
}

/* Codex indexes its threads in $CODEX_HOME/state_*.sqlite by absolute rollout path (the parent's
 * home); without the index it finds the copied rollouts under the fork's own home. */
static int codex_fork_fixup(const struct agent_fork *f)
{
    char *dir = xasprintf("%s/.codex", f->home);
    DIR *d = opendir(dir);
    int rc = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "state_", 6) != 0 || strstr(e->d_name, ".sqlite") == NULL)
            continue;
        char *victim = xasprintf("%s/%s", dir, e->d_name);
        if (unlink(victim) != 0 && errno != ENOENT)
            rc = -errno;
        free(victim);
    }
    if (d)
        closedir(d);
    free(dir);
    return rc;
}

const struct agent_adapter agent__codex = {
    .name = "codex",
    .program = "codex",
    .description = "Codex (the codex CLI, exec --json)",
    .command = codex_command,
    .line = codex_line,
    .fork_fixup = codex_fork_fixup,
};
