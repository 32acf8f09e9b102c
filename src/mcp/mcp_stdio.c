/*
 * mcp_stdio.c — the stdio-to-HTTP bridge behind `agentd mcp`. See mcp_stdio.h.
 *
 * The bridge remembers two things from the server's answers and sends them back as the
 * streamable HTTP transport asks clients to: the Mcp-Session-Id header given on initialize, and
 * the protocol revision initialize settled on (as MCP-Protocol-Version).
 */
#include "mcp/mcp_stdio.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_http.h"
#include "core/core.h"
#include "mcp/mcp.h"

struct mcp_stdio {
    struct cli_http *http;
    char *path;        /* /v1/sessions/<id>/mcp, escaped */
    char *session_id;  /* the session id argument, for messages */
    char *mcp_session; /* Mcp-Session-Id, once given */
    char *version;     /* the negotiated protocol revision, once known */
};

static const struct cli_opt mcp_stdio__opts[] = {
    {"session", "ID", "the agentd session whose runtimes the tool drives (required)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static void mcp_stdio__usage(FILE *out)
{
    fputs("usage: agentd mcp --session ID [--server URL] [--token T]\n"
          "\n"
          "An MCP server on stdio (newline-delimited JSON-RPC) for agents that start their tools as\n"
          "commands. It forwards every message to the running agentd server's MCP endpoint,\n"
          "/v1/sessions/ID/mcp, which offers the `runtime` tool: persistent bash/python/node for the\n"
          "session. Exits 0 at the end of stdin.\n"
          "\n"
          "options:\n",
          out);
    cli_args_usage(mcp_stdio__opts, out);
}

/* Writes one message as one line on stdout. */
static void mcp_stdio__emit(const char *text, size_t len)
{
    fwrite(text, 1, len, stdout);
    if (len == 0 || text[len - 1] != '\n')
        fputc('\n', stdout);
    fflush(stdout);
}

/* A JSON-RPC error for the request msg (borrowed), or NULL when msg is not a request. */
static json_t *mcp_stdio__error_for(json_t *msg, const char *message)
{
    json_t *id = json_object_get(msg, "id");
    if (!json_is_string(json_object_get(msg, "method")) || (!json_is_string(id) && !json_is_integer(id)))
        return NULL;
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                     MCP_INTERNAL_ERROR, "message", message);
}

/* The server could not answer line: every request in it gets a JSON-RPC error, so the client is
 * never left waiting. Notifications need nothing. */
static void mcp_stdio__fail(const char *line, size_t len, const char *message)
{
    fprintf(stderr, "agentd mcp: %s\n", message);
    json_t *doc = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_t *out = NULL;
    if (json_is_array(doc)) {
        out = json_array();
        for (size_t i = 0; i < json_array_size(doc); i++) {
            json_t *err = mcp_stdio__error_for(json_array_get(doc, i), message);
            if (err != NULL)
                json_array_append_new(out, err);
        }
        if (json_array_size(out) == 0) {
            json_decref(out);
            out = NULL;
        }
    } else if (doc != NULL) {
        out = mcp_stdio__error_for(doc, message);
    }
    if (out != NULL) {
        char *text = json_dumps(out, JSON_COMPACT);
        if (text != NULL)
            mcp_stdio__emit(text, strlen(text));
        free(text);
    }
    json_decref(out);
    json_decref(doc);
}

/* Notes the revision an initialize reply settled on. */
static void mcp_stdio__learn_version(struct mcp_stdio *st, const struct cli_http_response *resp)
{
    json_t *doc = json_loadb(resp->body.p, resp->body.len, 0, NULL);
    const char *version =
        json_string_value(json_object_get(json_object_get(doc, "result"), "protocolVersion"));
    if (version != NULL && mcp_protocol_supported(version)) {
        free(st->version);
        st->version = xstrdup(version);
    }
    json_decref(doc);
}

/* Forwards one line and writes what answers it; whatever happens, the bridge goes on. */
static void mcp_stdio__forward(struct mcp_stdio *st, const char *line, size_t len)
{
    char *session_header = st->mcp_session ? xasprintf("Mcp-Session-Id: %s", st->mcp_session) : NULL;
    char *version_header = st->version ? xasprintf("MCP-Protocol-Version: %s", st->version) : NULL;
    const char *headers[5] = {"Content-Type: application/json",
                              "Accept: application/json, text/event-stream"};
    int nh = 2;
    if (session_header)
        headers[nh++] = session_header;
    if (version_header)
        headers[nh++] = version_header;
    headers[nh] = NULL;
    struct cli_http_request req = {
        .method = "POST",
        .path = st->path,
        .headers = headers,
        .body = line,
        .body_len = len,
        /* No limit: a tool call lasts as long as its code (the runtime enforces timeout_ms). */
        .timeout_ms = 0,
    };
    struct cli_http_response resp = {0};
    int rc = cli_http_request(st->http, &req, &resp);
    free(session_header);
    free(version_header);

    if (rc < 0) {
        char *msg =
            xasprintf("agentd at %s is unreachable: %s", cli_http_server(st->http), cli_http_error(st->http));
        mcp_stdio__fail(line, len, msg);
        free(msg);
    } else if (resp.status == 200 || resp.status == 400) {
        /* 400 carries the JSON-RPC error for input that was not JSON-RPC; anything else at 400
         * (an unsupported protocol header) is not a JSON-RPC body and becomes an error below. */
        const char *sid = cli_http_header(&resp, "Mcp-Session-Id");
        if (sid != NULL && (st->mcp_session == NULL || strcmp(sid, st->mcp_session) != 0)) {
            free(st->mcp_session);
            st->mcp_session = xstrdup(sid);
            mcp_stdio__learn_version(st, &resp);
        }
        json_t *doc = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        int jsonrpc = json_is_array(doc) || json_object_get(doc, "jsonrpc") != NULL;
        json_decref(doc);
        if (jsonrpc) {
            mcp_stdio__emit(resp.body.p, resp.body.len);
        } else {
            struct buf msg = {0};
            if (cli_http_error_message(resp.body.p, resp.body.len, &msg) != 0)
                buf_printf(&msg, "HTTP %ld", resp.status);
            mcp_stdio__fail(line, len, msg.p);
            buf_free(&msg);
        }
    } else if (resp.status != 202) {
        struct buf msg = {0};
        if (resp.status == 404)
            buf_printf(&msg, "no agentd session %s", st->session_id);
        else if (cli_http_error_message(resp.body.p, resp.body.len, &msg) != 0)
            buf_printf(&msg, "HTTP %ld from agentd", resp.status);
        mcp_stdio__fail(line, len, msg.p);
        buf_free(&msg);
    }
    cli_http_response_reset(&resp);
}

/* stdin ended: tell the server this MCP session is over (it keeps nothing, so failures do not
 * matter). */
static void mcp_stdio__end(struct mcp_stdio *st)
{
    if (st->mcp_session == NULL)
        return;
    char *session_header = xasprintf("Mcp-Session-Id: %s", st->mcp_session);
    const char *headers[] = {session_header, NULL};
    struct cli_http_request req = {
        .method = "DELETE", .path = st->path, .headers = headers, .timeout_ms = 5000};
    struct cli_http_response resp = {0};
    if (cli_http_request(st->http, &req, &resp) != 0)
        log_debug("mcp: DELETE at the end failed: %s", cli_http_error(st->http));
    cli_http_response_reset(&resp);
    free(session_header);
}

int mcp_stdio_main(int argc, char **argv)
{
    struct cli_args args;
    const char *reason = cli_args_parse(mcp_stdio__opts, argc - 1, argv + 1, &args);
    if (reason != NULL) {
        fprintf(stderr, "agentd mcp: %s (see --help)\n", reason);
        return CLI_EXIT_USAGE;
    }
    if (cli_args_get(&args, "help") != NULL) {
        mcp_stdio__usage(stdout);
        return CLI_EXIT_OK;
    }
    const char *session = cli_args_get(&args, "session");
    if (session == NULL || *session == '\0' || args.npositional != 0) {
        mcp_stdio__usage(stderr);
        return CLI_EXIT_USAGE;
    }

    struct mcp_stdio st = {.session_id = xstrdup(session)};
    struct buf path = {0};
    buf_puts(&path, "/v1/sessions/");
    cli_http_path_escape(&path, session);
    buf_puts(&path, "/mcp");
    st.path = path.p;
    st.http = cli_http_new(cli_args_server(&args), cli_args_token(&args));

    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (strspn(line, " \t") >= len)
            continue; /* blank lines separate nothing */
        mcp_stdio__forward(&st, line, len);
    }
    int status = ferror(stdin) ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    if (status != CLI_EXIT_OK)
        fprintf(stderr, "agentd mcp: reading stdin: %s\n", strerror(errno));
    mcp_stdio__end(&st);
    free(line);
    cli_http_free(st.http);
    free(st.path);
    free(st.session_id);
    free(st.mcp_session);
    free(st.version);
    return status;
}
