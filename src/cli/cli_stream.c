/*
 * cli_stream.c — `agentd stream ...`: create, append, read, tail, head, delete, fork and close a
 * durable stream on a running server, speaking the Durable Streams protocol at /v1/stream/<path>.
 *
 * Output contract (see `agentd stream --help`): without --json, stdout carries the stream's bytes (read,
 * tail; JSON-mode streams one message per line) or the resulting next offset (create, append, fork,
 * close); notes go to stderr. With --json every stdout line is one JSON object.
 *
 * Exactly-once printing in `tail`: a data event is held until the control event that follows it
 * names the offset after it. If the connection breaks in between, the held data is dropped and the
 * reconnect (from the last confirmed offset) delivers it again, so nothing is printed twice.
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_http.h"
#include "cli/cli_json.h"
#include "cli/cli_sse.h"
#include "core/core.h"

#define CLI_STREAM_PREFIX     "/v1/stream/"
#define CLI_STREAM_TIMEOUT_MS 60000L /* one non-live request */

/* One invocation: the client and the output mode. */
/* ---- Small helpers ------------------------------------------------------------------------ */

/* Request headers under construction; the strings are owned here. */
struct cli_stream__headers {
    char *items[16];
    int n;
};

static void cli_stream__header(struct cli_stream__headers *h, const char *name, const char *value)
{
    if (h->n + 1 >= (int)CORE_ARRAY_LEN(h->items)) {
        fprintf(stderr, "agentd: too many request headers\n");
        abort();
    }
    h->items[h->n++] = xasprintf("%s: %s", name, value);
    h->items[h->n] = NULL;
}

static void cli_stream__headers_free(struct cli_stream__headers *h)
{
    for (int i = 0; i < h->n; i++)
        free(h->items[i]);
    h->n = 0;
}

/* "/v1/stream/<path>", escaped. Accepts "a/b", "/a/b" and "/v1/stream/a/b" for the same stream. */
static void cli_stream__url(struct buf *out, const char *path)
{
    while (*path == '/')
        path++;
    if (strncmp(path, &CLI_STREAM_PREFIX[1], strlen(CLI_STREAM_PREFIX) - 1) == 0)
        path += strlen(CLI_STREAM_PREFIX) - 1;
    buf_puts(out, CLI_STREAM_PREFIX);
    cli_http_path_escape(out, path);
}

static void cli_stream__url_offset(struct buf *out, const char *path, const char *offset, const char *live)
{
    cli_stream__url(out, path);
    buf_puts(out, "?offset=");
    cli_http_path_escape(out, offset);
    if (live != NULL)
        buf_printf(out, "&live=%s", live);
}

/* Media type equality, ignoring parameters and case ("application/json; charset=utf-8" is JSON). */
static int cli_stream__media_is(const char *content_type, const char *media)
{
    if (content_type == NULL)
        return 0;
    size_t len = strcspn(content_type, ";");
    while (len > 0 && (content_type[len - 1] == ' ' || content_type[len - 1] == '\t'))
        len--;
    return len == strlen(media) && strncasecmp(content_type, media, len) == 0;
}

/* Protocol booleans are headers whose value is "true" (case-insensitive); absence means false. */
static int cli_stream__header_true(const struct cli_http_response *resp, const char *name)
{
    const char *value = cli_http_header(resp, name);
    return value != NULL && strcasecmp(value, "true") == 0;
}

/* Binary streams are those whose bytes are not text: the server base64-encodes them in SSE, and
 * --json output carries them base64-encoded too. */
static int cli_stream__is_binary(const char *content_type)
{
    if (content_type == NULL)
        return 1;
    return !cli_stream__media_is(content_type, "application/json") &&
           strncasecmp(content_type, "text/", 5) != 0;
}

static int cli_stream__read_fd(FILE *f, struct buf *out)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(out, chunk, n);
    return ferror(f) ? -EIO : 0;
}

/* Loads "--data TEXT|@file" (or "-" for stdin) into out. Returns 0 or a negative errno (reported). */
static int cli_stream__load(const char *spec, struct buf *out)
{
    if (strcmp(spec, "-") == 0) {
        if (cli_stream__read_fd(stdin, out) != 0) {
            fprintf(stderr, "agentd: cannot read stdin: %s\n", strerror(errno));
            return -EIO;
        }
        return 0;
    }
    if (spec[0] != '@') {
        buf_puts(out, spec);
        return 0;
    }
    FILE *f = fopen(spec + 1, "rb");
    if (f == NULL) {
        int rc = -errno;
        fprintf(stderr, "agentd: cannot open %s: %s\n", spec + 1, strerror(errno));
        return rc;
    }
    int rc = cli_stream__read_fd(f, out);
    if (rc != 0)
        fprintf(stderr, "agentd: cannot read %s: %s\n", spec + 1, strerror(errno));
    fclose(f);
    return rc;
}

/* A --json line is built field by field (the first one opens the object) and written by
 * cli_stream__emit, which closes it and frees line. */
static void cli_stream__emit(struct buf *line)
{
    buf_append(line, "}\n", 2);
    fwrite(line->p, 1, line->len, stdout);
    fflush(stdout);
    buf_free(line);
}

static void cli_stream__json_field(struct buf *line, const char *name, const char *value)
{
    buf_printf(line, "%c\"%s\":", line->len ? ',' : '{', name);
    if (value != NULL)
        buf_json_string(line, value, strlen(value));
    else
        buf_puts(line, "null");
}

static void cli_stream__json_raw(struct buf *line, const char *name, const char *raw)
{
    buf_printf(line, "%c\"%s\":%s", line->len ? ',' : '{', name, raw);
}

/* Appends "data" (and "encoding") for n payload bytes to a --json line. */
static void cli_stream__json_data(struct buf *line, const char *p, size_t n, int binary)
{
    if (!binary) {
        buf_puts(line, ",\"data\":");
        buf_json_string(line, p, n);
        return;
    }
    size_t b64_len = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = xmalloc(b64_len);
    sodium_bin2base64(b64, b64_len, (const unsigned char *)p, n, sodium_base64_VARIANT_ORIGINAL);
    cli_stream__json_field(line, "data", b64);
    buf_puts(line, ",\"encoding\":\"base64\"");
    free(b64);
}

/* ---- Printing stream content -------------------------------------------------------------- */

/* How read and tail print a piece of stream content: which offset it ends at and its kind. */
struct cli_stream__printer {
    const char *offset; /* the offset after this content (borrowed) */
    int json;           /* --json output */
    int json_stream;    /* application/json stream: content is one JSON array */
    int binary;
};

static int cli_stream__print_message(void *arg, const char *p, size_t n)
{
    const struct cli_stream__printer *printer = arg;
    if (printer->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "offset", printer->offset);
        buf_puts(&line, ",\"data\":");
        buf_append(&line, p, n);
        cli_stream__emit(&line);
    } else {
        fwrite(p, 1, n, stdout);
        fputc('\n', stdout);
    }
    return 0;
}

/* Prints content: JSON streams one message per line, others as raw bytes (or one --json line). */
static void cli_stream__print(const struct cli_stream__printer *printer, const char *p, size_t n)
{
    if (printer->json_stream) {
        if (cli_json_array_each(p, n, cli_stream__print_message, (void *)printer) == 0) {
            fflush(stdout);
            return;
        }
        fprintf(stderr, "agentd: warning: JSON stream content is not an array; printed as is\n");
    }
    if (n == 0)
        return;
    if (printer->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "offset", printer->offset);
        cli_stream__json_data(&line, p, n, printer->binary);
        cli_stream__emit(&line);
    } else {
        fwrite(p, 1, n, stdout);
        fflush(stdout);
    }
}

/* ---- create / fork ------------------------------------------------------------------------ */

static const struct cli_opt cli_stream__create_opts[] = {
    {"content-type", "TYPE", "stream content type (default application/octet-stream)"},
    {"ttl", "SECONDS", "delete the stream after this many idle seconds"},
    {"expires-at", "RFC3339", "delete the stream at this time"},
    {"closed", NULL, "create the stream already closed"},
    {"data", "TEXT|@FILE|-", "initial content"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static const struct cli_opt cli_stream__fork_opts[] = {
    {"offset", "OFFSET", "fork point in the source (default: its tail)"},
    {"sub-offset", "N", "also take N messages (JSON) or bytes past --offset"},
    {"content-type", "TYPE", "must match the source's (default: inherited)"},
    {"ttl", "SECONDS", "delete the fork after this many idle seconds"},
    {"expires-at", "RFC3339", "delete the fork at this time"},
    {"data", "TEXT|@FILE|-", "content appended to the fork after the fork point"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* "", "/" or "//" name no stream: refuse them here rather than send a request for the root. */
static int cli_stream__bad_path(const char *command, const char *path)
{
    if (strspn(path, "/") != strlen(path))
        return 0;
    fprintf(stderr, "agentd stream %s: a stream path cannot be empty\n", command);
    return 1;
}

/* PUT path, used by create and (with fork_source) fork. */
static int cli_stream__put(struct cli_client *cs, const struct cli_args *args, const char *path,
                           const char *fork_source)
{
    if (cli_stream__bad_path(fork_source ? "fork" : "create", path) ||
        (fork_source && cli_stream__bad_path("fork", fork_source)))
        return CLI_EXIT_USAGE;
    struct cli_stream__headers headers = {0};
    struct buf url = {0}, body = {0};
    struct cli_http_response resp = {0};
    const char *value;
    int status = CLI_EXIT_USAGE;

    if ((value = cli_args_get(args, "content-type")) != NULL)
        cli_stream__header(&headers, "Content-Type", value);
    else if (fork_source == NULL)
        cli_stream__header(&headers, "Content-Type", "application/octet-stream");
    if ((value = cli_args_get(args, "ttl")) != NULL)
        cli_stream__header(&headers, "Stream-TTL", value);
    if ((value = cli_args_get(args, "expires-at")) != NULL)
        cli_stream__header(&headers, "Stream-Expires-At", value);
    if (fork_source == NULL && cli_args_get(args, "closed") != NULL)
        cli_stream__header(&headers, "Stream-Closed", "true");
    if (fork_source != NULL) {
        struct buf source = {0};
        cli_stream__url(&source, fork_source);
        cli_stream__header(&headers, "Stream-Forked-From", source.p);
        buf_free(&source);
        if ((value = cli_args_get(args, "offset")) != NULL)
            cli_stream__header(&headers, "Stream-Fork-Offset", value);
        if ((value = cli_args_get(args, "sub-offset")) != NULL)
            cli_stream__header(&headers, "Stream-Fork-Sub-Offset", value);
    }
    if ((value = cli_args_get(args, "data")) != NULL && cli_stream__load(value, &body) != 0)
        goto fail;

    cli_stream__url(&url, path);
    struct cli_http_request req = {
        .method = "PUT",
        .path = url.p,
        .headers = (const char *const *)headers.items,
        .body = body.p,
        .body_len = body.len,
        .timeout_ms = CLI_STREAM_TIMEOUT_MS,
    };
    int rc = cli_http_request(cs->http, &req, &resp);
    status = cli_http_report(cs->http, fork_source != NULL ? "fork" : "create", rc, &resp);
    if (status != CLI_EXIT_OK)
        goto fail;

    const char *next = cli_http_header(&resp, "Stream-Next-Offset");
    if (cs->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "path", path);
        cli_stream__json_raw(&line, "created", resp.status == 201 ? "true" : "false");
        cli_stream__json_field(&line, "nextOffset", next);
        cli_stream__json_raw(&line, "closed",
                             cli_stream__header_true(&resp, "Stream-Closed") ? "true" : "false");
        cli_stream__emit(&line);
    } else {
        if (resp.status == 200)
            fprintf(stderr, "agentd: %s already exists with the same configuration\n", path);
        printf("%s\n", next != NULL ? next : "");
    }

fail:
    cli_http_response_reset(&resp);
    cli_stream__headers_free(&headers);
    buf_free(&url);
    buf_free(&body);
    return status;
}

static int cli_stream__create(struct cli_client *cs, const struct cli_args *args)
{
    return cli_stream__put(cs, args, args->positional[0], NULL);
}

static int cli_stream__fork(struct cli_client *cs, const struct cli_args *args)
{
    return cli_stream__put(cs, args, args->positional[1], args->positional[0]);
}

/* ---- head --------------------------------------------------------------------------------- */

static const struct cli_opt cli_stream__plain_opts[] = {
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* HEAD path into resp; reports failures and returns the exit status. */
static int cli_stream__head_request(struct cli_client *cs, const char *path, const char *what,
                                    struct cli_http_response *resp)
{
    struct buf url = {0};
    cli_stream__url(&url, path);
    struct cli_http_request req = {.method = "HEAD", .path = url.p, .timeout_ms = CLI_STREAM_TIMEOUT_MS};
    int rc = cli_http_request(cs->http, &req, resp);
    buf_free(&url);
    return cli_http_report(cs->http, what, rc, resp);
}

static int cli_stream__head(struct cli_client *cs, const struct cli_args *args)
{
    struct cli_http_response resp = {0};
    const char *path = args->positional[0];
    if (cli_stream__bad_path("head", path))
        return CLI_EXIT_USAGE;
    int status = cli_stream__head_request(cs, path, "head", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;

    const char *type = cli_http_header(&resp, "Content-Type");
    const char *next = cli_http_header(&resp, "Stream-Next-Offset");
    const char *ttl = cli_http_header(&resp, "Stream-TTL");
    const char *expires = cli_http_header(&resp, "Stream-Expires-At");
    int is_closed = cli_stream__header_true(&resp, "Stream-Closed");
    if (cs->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "path", path);
        cli_stream__json_field(&line, "contentType", type);
        cli_stream__json_field(&line, "nextOffset", next);
        cli_stream__json_raw(&line, "closed", is_closed ? "true" : "false");
        if (ttl != NULL && strspn(ttl, "0123456789") == strlen(ttl) && ttl[0] != '\0')
            cli_stream__json_raw(&line, "ttl", ttl);
        if (expires != NULL)
            cli_stream__json_field(&line, "expiresAt", expires);
        cli_stream__emit(&line);
    } else {
        printf("content-type: %s\n", type != NULL ? type : "");
        printf("next-offset: %s\n", next != NULL ? next : "");
        printf("closed: %s\n", is_closed ? "true" : "false");
        if (ttl != NULL)
            printf("ttl: %s\n", ttl);
        if (expires != NULL)
            printf("expires-at: %s\n", expires);
    }
fail:
    cli_http_response_reset(&resp);
    return status;
}

/* ---- append / close / delete -------------------------------------------------------------- */

static const struct cli_opt cli_stream__append_opts[] = {
    {"content-type", "TYPE", "content type (default: the stream's, asked with HEAD)"},
    {"close", NULL, "close the stream with this append"},
    {"seq", "SEQ", "Stream-Seq (with --producer: the producer's sequence number)"},
    {"stream-seq", "SEQ", "Stream-Seq, when --seq is the producer's"},
    {"producer", "ID", "idempotent producer id (needs --epoch and --seq)"},
    {"epoch", "N", "producer epoch"},
    {"data", "TEXT|@FILE|-", "content, instead of the DATA argument"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* POST to path: an append (body non-empty) and/or a close. Reports and returns the exit status. */
static int cli_stream__post(struct cli_client *cs, const char *path, const char *what,
                            struct cli_stream__headers *headers, const struct buf *body, int close)
{
    if (cli_stream__bad_path(what, path))
        return CLI_EXIT_USAGE;
    struct buf url = {0};
    struct cli_http_response resp = {0};

    if (close)
        cli_stream__header(headers, "Stream-Closed", "true");
    cli_stream__url(&url, path);
    struct cli_http_request req = {
        .method = "POST",
        .path = url.p,
        .headers = (const char *const *)headers->items,
        .body = body->p,
        .body_len = body->len,
        .timeout_ms = CLI_STREAM_TIMEOUT_MS,
    };
    int rc = cli_http_request(cs->http, &req, &resp);
    int status = cli_http_report(cs->http, what, rc, &resp);
    if (status != CLI_EXIT_OK)
        goto fail;

    const char *next = cli_http_header(&resp, "Stream-Next-Offset");
    const char *epoch = cli_http_header(&resp, "Producer-Epoch");
    const char *seq = cli_http_header(&resp, "Producer-Seq");
    /* With producer headers, 200 means appended and 204 means "already had it". */
    int duplicate = epoch != NULL && resp.status == 204;
    if (cs->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "path", path);
        cli_stream__json_field(&line, "nextOffset", next);
        cli_stream__json_raw(&line, "closed",
                             cli_stream__header_true(&resp, "Stream-Closed") ? "true" : "false");
        if (epoch != NULL) {
            cli_stream__json_raw(&line, "duplicate", duplicate ? "true" : "false");
            cli_stream__json_field(&line, "producerEpoch", epoch);
            cli_stream__json_field(&line, "producerSeq", seq);
        }
        cli_stream__emit(&line);
    } else {
        if (duplicate)
            fprintf(stderr, "agentd: duplicate: the server already has producer seq %s\n",
                    seq != NULL ? seq : "?");
        if (next != NULL) /* a duplicate's answer may carry no offset */
            printf("%s\n", next);
    }
fail:
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* The append flags that contradict each other: the complaint, or NULL. */
static const char *cli_stream__append_conflict(const struct cli_args *args)
{
    const char *seq = cli_args_get(args, "seq");
    const char *producer = cli_args_get(args, "producer");
    const char *epoch = cli_args_get(args, "epoch");
    if (args->npositional > 1 && cli_args_get(args, "data") != NULL)
        return "give DATA or --data, not both";
    if (producer != NULL && (epoch == NULL || seq == NULL))
        return "--producer needs --epoch and --seq";
    if (producer == NULL && epoch != NULL)
        return "--epoch needs --producer";
    if (producer == NULL && seq != NULL && cli_args_get(args, "stream-seq") != NULL)
        return "--seq and --stream-seq both set Stream-Seq";
    return NULL;
}

/* What to append into body: DATA as given (- for stdin), else --data (TEXT, @FILE or -), else stdin
 * when it is not a terminal; nothing when there is none of them. 0, or -1 (reported already). */
static int cli_stream__append_body(const char *data, const char *data_opt, struct buf *body)
{
    if (data != NULL && strcmp(data, "-") != 0) {
        buf_puts(body, data); /* a literal argument: sent as is, even when it starts with '@' */
        return 0;
    }
    if (data != NULL)
        return cli_stream__load("-", body);
    if (data_opt != NULL)
        return cli_stream__load(data_opt, body);
    return isatty(STDIN_FILENO) ? 0 : cli_stream__load("-", body);
}

/* An append's Content-Type: --content-type, else the stream's own, asked for with HEAD (the server
 * insists on it). An exit status. */
static int cli_stream__append_type(struct cli_client *cs, const char *path, const char *content_type,
                                   struct cli_stream__headers *headers)
{
    if (content_type != NULL) {
        cli_stream__header(headers, "Content-Type", content_type);
        return CLI_EXIT_OK;
    }
    struct cli_http_response head = {0};
    int status = cli_stream__head_request(cs, path, "append", &head);
    if (status == CLI_EXIT_OK) {
        const char *type = cli_http_header(&head, "Content-Type");
        cli_stream__header(headers, "Content-Type", type != NULL ? type : "application/octet-stream");
    }
    cli_http_response_reset(&head);
    return status;
}

static int cli_stream__append(struct cli_client *cs, const struct cli_args *args)
{
    struct cli_stream__headers headers = {0};
    struct buf body = {0};
    const char *path = args->positional[0];
    const char *seq = cli_args_get(args, "seq");
    const char *stream_seq = cli_args_get(args, "stream-seq");
    const char *producer = cli_args_get(args, "producer");
    int close = cli_args_get(args, "close") != NULL;
    int status = CLI_EXIT_USAGE;

    const char *conflict = cli_stream__append_conflict(args);
    if (conflict != NULL) {
        fprintf(stderr, "agentd: append: %s\n", conflict);
        goto fail;
    }
    if (cli_stream__append_body(args->npositional > 1 ? args->positional[1] : NULL,
                                cli_args_get(args, "data"), &body) != 0)
        goto fail; /* reported by cli_stream__load */
    if (body.len == 0 && !close) {
        fprintf(stderr, "agentd: append: nothing to append (give DATA, - for stdin, or --close)\n");
        goto fail;
    }
    if (body.len > 0 && (status = cli_stream__append_type(cs, path, cli_args_get(args, "content-type"),
                                                          &headers)) != CLI_EXIT_OK)
        goto fail;
    if (producer != NULL) {
        cli_stream__header(&headers, "Producer-Id", producer);
        cli_stream__header(&headers, "Producer-Epoch", cli_args_get(args, "epoch"));
        cli_stream__header(&headers, "Producer-Seq", seq);
        if (stream_seq != NULL)
            cli_stream__header(&headers, "Stream-Seq", stream_seq);
    } else if (seq != NULL || stream_seq != NULL) {
        cli_stream__header(&headers, "Stream-Seq", seq != NULL ? seq : stream_seq);
    }
    status = cli_stream__post(cs, path, "append", &headers, &body, close);

fail:
    cli_stream__headers_free(&headers);
    buf_free(&body);
    return status;
}

static int cli_stream__close(struct cli_client *cs, const struct cli_args *args)
{
    struct cli_stream__headers headers = {0};
    struct buf body = {0};
    int status = cli_stream__post(cs, args->positional[0], "close", &headers, &body, 1);
    cli_stream__headers_free(&headers);
    return status;
}

static int cli_stream__delete(struct cli_client *cs, const struct cli_args *args)
{
    struct buf url = {0};
    struct cli_http_response resp = {0};
    const char *path = args->positional[0];
    if (cli_stream__bad_path("delete", path))
        return CLI_EXIT_USAGE;

    cli_stream__url(&url, path);
    struct cli_http_request req = {.method = "DELETE", .path = url.p, .timeout_ms = CLI_STREAM_TIMEOUT_MS};
    int rc = cli_http_request(cs->http, &req, &resp);
    int status = cli_http_report(cs->http, "delete", rc, &resp);
    if (status == CLI_EXIT_OK && cs->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "path", path);
        cli_stream__json_raw(&line, "deleted", "true");
        cli_stream__emit(&line);
    }
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- read --------------------------------------------------------------------------------- */

static const struct cli_opt cli_stream__read_opts[] = {
    {"offset", "OFFSET", "start here (default -1, the beginning; now: the tail)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* The end of read and tail: where to resume (read also says it is up to date). */
static void cli_stream__print_end(const struct cli_client *cs, const char *offset, int up_to_date, int closed)
{
    if (cs->json) {
        struct buf line = {0};
        cli_stream__json_field(&line, "offset", offset);
        if (up_to_date)
            cli_stream__json_raw(&line, "upToDate", "true");
        cli_stream__json_raw(&line, "closed", closed ? "true" : "false");
        cli_stream__emit(&line);
    } else {
        fflush(stdout);
        fprintf(stderr, "next-offset: %s%s\n", offset, closed ? " (closed)" : "");
    }
}

/* Catch-up read: GET from the offset, chunk after chunk, until the server says Stream-Up-To-Date. */
static int cli_stream__read(struct cli_client *cs, const struct cli_args *args)
{
    const char *path = args->positional[0];
    if (cli_stream__bad_path("read", path))
        return CLI_EXIT_USAGE;
    const char *start = cli_args_get(args, "offset");
    char *offset = xstrdup(start != NULL ? start : "-1");
    struct cli_http_response resp = {0};
    struct buf url = {0};
    int status, closed = 0;

    for (;;) {
        buf_reset(&url);
        cli_stream__url_offset(&url, path, offset, NULL);
        struct cli_http_request req = {.method = "GET", .path = url.p, .timeout_ms = CLI_STREAM_TIMEOUT_MS};
        int rc = cli_http_request(cs->http, &req, &resp);
        status = cli_http_report(cs->http, "read", rc, &resp);
        if (status != CLI_EXIT_OK)
            goto fail;

        const char *next = cli_http_header(&resp, "Stream-Next-Offset");
        const char *type = cli_http_header(&resp, "Content-Type");
        if (next == NULL) {
            fprintf(stderr, "agentd: read: the server sent no Stream-Next-Offset\n");
            status = CLI_EXIT_HTTP;
            goto fail;
        }
        struct cli_stream__printer printer = {
            .offset = next,
            .json = cs->json,
            .json_stream = cli_stream__media_is(type, "application/json"),
            .binary = cli_stream__is_binary(type),
        };
        cli_stream__print(&printer, resp.body.p, resp.body.len);
        closed = cli_stream__header_true(&resp, "Stream-Closed");
        /* A chunk that does not move the offset would loop forever; treat it as the end. */
        int done = cli_stream__header_true(&resp, "Stream-Up-To-Date") || strcmp(next, offset) == 0;
        free(offset);
        offset = xstrdup(next);
        if (done)
            break;
    }

    cli_stream__print_end(cs, offset, 1, closed);
fail:
    cli_http_response_reset(&resp);
    buf_free(&url);
    free(offset);
    return status;
}

/* ---- tail --------------------------------------------------------------------------------- */

static const struct cli_opt cli_stream__tail_opts[] = {
    {"offset", "OFFSET", "start here (default -1, the beginning; now: only new data)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* What one `tail` prints with; cli_follow does the reading. */
struct cli_stream__tail {
    struct cli_client *cs;
    int json_stream; /* the stream is application/json (from HEAD) */
    int binary;      /* its bytes are not text (from HEAD) */
    int closed;
};

static int cli_stream__tail_data(void *arg, const char *p, size_t n, const char *offset)
{
    const struct cli_stream__tail *tail = arg;
    struct cli_stream__printer printer = {
        .offset = offset,
        .json = tail->cs->json,
        .json_stream = tail->json_stream,
        .binary = tail->binary,
    };
    cli_stream__print(&printer, p, n);
    return 0;
}

static int cli_stream__tail_control(void *arg, const char *offset, int up_to_date, int closed)
{
    struct cli_stream__tail *tail = arg;
    (void)offset;
    (void)up_to_date;
    tail->closed = closed;
    return 0;
}

static int cli_stream__tail(struct cli_client *cs, const struct cli_args *args)
{
    const char *path = args->positional[0];
    if (cli_stream__bad_path("tail", path))
        return CLI_EXIT_USAGE;
    const char *start = cli_args_get(args, "offset");
    struct cli_stream__tail tail = {.cs = cs};
    struct cli_http_response resp = {0};
    struct buf url = {0};
    char *offset = NULL;

    /* HEAD first: a missing stream fails fast, and JSON streams are printed message by message. */
    int status = cli_stream__head_request(cs, path, "tail", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    const char *type = cli_http_header(&resp, "Content-Type");
    tail.json_stream = cli_stream__media_is(type, "application/json");
    tail.binary = cli_stream__is_binary(type);
    offset = xstrdup(start != NULL ? start : "-1");
    cli_stream__url(&url, path);
    const struct cli_follow_cb cb = {
        .on_data = cli_stream__tail_data,
        .on_control = cli_stream__tail_control,
        .arg = &tail,
    };
    status = cli_follow(cs->http, "tail", url.p, &offset, &cb);
    if (status != CLI_EXIT_OK)
        goto fail;

    cli_stream__print_end(cs, offset, 0, 1);
fail:
    free(offset);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- Dispatch and help -------------------------------------------------------------------- */

static const struct cli_command cli_stream__commands[] = {
    {"create", "PATH", 1, 1, cli_stream__create_opts, cli_stream__create,
     "create a stream; prints its next offset"},
    {"append", "PATH [DATA|-]", 1, 2, cli_stream__append_opts, cli_stream__append,
     "append DATA (stdin when - or absent and stdin is not a terminal); prints the next offset"},
    {"read", "PATH", 1, 1, cli_stream__read_opts, cli_stream__read,
     "print the stream from --offset to its current end; next offset on stderr"},
    {"tail", "PATH", 1, 1, cli_stream__tail_opts, cli_stream__tail,
     "print the stream and follow it live (SSE) until it is closed"},
    {"head", "PATH", 1, 1, cli_stream__plain_opts, cli_stream__head,
     "print content type, next offset, closed, TTL and expiry"},
    {"delete", "PATH", 1, 1, cli_stream__plain_opts, cli_stream__delete, "delete a stream"},
    {"fork", "SRC DST", 2, 2, cli_stream__fork_opts, cli_stream__fork,
     "create DST as a fork of SRC at --offset; prints DST's next offset"},
    {"close", "PATH", 1, 1, cli_stream__plain_opts, cli_stream__close,
     "close a stream (no more appends); prints its final offset"},
};

static const struct cli_noun cli_stream__noun = {
    .name = "stream",
    .commands = cli_stream__commands,
    .ncommands = CORE_ARRAY_LEN(cli_stream__commands),
    .intro = "Commands (PATH names the stream at SERVER/v1/stream/PATH):",
    .footer = "\nOutput: stream content goes to stdout as is; JSON streams print one message per line.\n"
              "With --json, stdout has one JSON object per line: read and tail print\n"
              "{\"offset\",\"data\"} per message or chunk (\"encoding\":\"base64\" for binary streams;\n"
              "offset is where to resume after it), then {\"offset\",...,\"closed\"} at the end.\n"
              "With --producer, append's --seq is Producer-Seq and --stream-seq sets Stream-Seq.\n"
              "\nExit status:\n"
              "  0  success\n"
              "  1  usage error, or a local file or stdin could not be read\n"
              "  2  server unreachable\n"
              "  3  not found (HTTP 404)\n"
              "  4  conflict (HTTP 409 or 410: exists with another configuration, closed, deleted,\n"
              "     sequence out of order)\n"
              "  5  other HTTP error (the server's error message is printed on stderr)\n",
};

int cli_stream_main(int argc, char **argv) { return cli_noun_main(&cli_stream__noun, argc, argv); }
