/*
 * demo — the built-in demo agent (`agentd demo-agent`). See demo.h for what one run does; the
 * protocol is doc/AGENT-PROTOCOL.md. It is an ordinary program: blocking I/O on its own stdin and
 * stdout, no loop, nothing shared with the server but the binary.
 */
#include "demo/demo.h"
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_DELAY_DEFAULT_MS 40
#define DEMO_DELAY_MAX_MS     5000
#define DEMO_SLOW_MS          100 /* at least this per delta when the message says "slow" */
#define DEMO_LIST_MAX         200 /* entries listed by the workspace tool */
#define DEMO_NOTES            "demo-notes.md"
#define DEMO_STATE_DIR        ".agentd-demo" /* under $HOME: one file per conversation */

struct demo {
    int delay_ms;      /* this turn's pause per delta */
    int base_delay_ms; /* AGENTD_DEMO_DELAY_MS */
    struct buf in;     /* stdin bytes not yet consumed as lines */
    int cancelled;     /* a cancel line or EOF arrived: the process ends */
    int interrupted;   /* an interrupt line arrived: the turn ends, the process stays */
    int approvals;     /* agentd wants to be asked before the tool that writes */
    struct buf steers; /* text that came in mid-turn (steer lines), one per line */
    json_t *answer;    /* the permission_response to the request in flight */
    json_t *next;      /* the next message's user line, read while a turn ran */
    const char *ws;    /* the workspace (the cwd when the user line names none) */
    char *ws_copy;     /* ws when the user line named it */
    char conv[64];     /* the conversation id announced with `session` */
    long turn;         /* this message's number in the conversation */
    size_t out_tokens; /* words streamed, reported as output tokens */
    uint64_t start_us;
};

/* ================= stdout ================= */

/* Writes one event line (takes ev). A failed write means agentd is gone: stop. */
static void demo__emit(json_t *ev)
{
    char *s = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (s == NULL || printf("%s\n", s) < 0 || fflush(stdout) != 0)
        exit(1);
    free(s);
}

static void demo__log(const char *level, const char *fmt, ...) CORE_PRINTF(2, 3);
static void demo__log(const char *level, const char *fmt, ...)
{
    struct buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    demo__emit(json_pack("{s:s, s:s, s:s}", "type", "log", "level", level, "text", b.p ? b.p : ""));
    buf_free(&b);
}

/* ================= stdin: the user line, then control lines ================= */

/* One control line: cancel, and (protocol 2) interrupt, steer, permission_response, and the next
 * message's user line. Returns 1 when it was a user line (kept in d->next, not consumed). */
static int demo__control(struct demo *d, json_t *j)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type == NULL)
        return 0;
    if (strcmp(type, "cancel") == 0) {
        d->cancelled = 1;
    } else if (strcmp(type, "interrupt") == 0) {
        d->interrupted = 1;
    } else if (strcmp(type, "steer") == 0 && json_string_value(json_object_get(j, "text"))) {
        buf_printf(&d->steers, "%s\n", json_string_value(json_object_get(j, "text")));
    } else if (strcmp(type, "permission_response") == 0) {
        json_decref(d->answer);
        d->answer = json_incref(j);
    } else if (strcmp(type, "user") == 0 && d->next == NULL) {
        d->next = json_incref(j);
        return 1;
    }
    return 0;
}

/* Consumes every complete line in d->in, up to a next message's user line. */
static void demo__control_lines(struct demo *d)
{
    char *nl;
    while (d->next == NULL && (nl = memchr(d->in.p, '\n', d->in.len)) != NULL) {
        json_t *j = json_loadb(d->in.p, (size_t)(nl - d->in.p), 0, NULL);
        demo__control(d, j);
        json_decref(j);
        buf_consume(&d->in, (size_t)(nl - d->in.p) + 1);
    }
}

static int demo__stopped(const struct demo *d) { return d->cancelled || d->interrupted; }

/* Reads what stdin has within timeout_ms (-1: wait). EOF counts as a cancel (the protocol). */
static void demo__read(struct demo *d, int timeout_ms)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    if (d->cancelled || poll(&p, 1, timeout_ms) <= 0)
        return;
    char chunk[4096];
    ssize_t n = read(0, chunk, sizeof chunk);
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            d->cancelled = 1;
        return;
    }
    buf_append(&d->in, chunk, (size_t)n);
}

/* Waits ms while listening for a cancel or an interrupt. Returns 1 when the turn must stop. */
static int demo__pause(struct demo *d, int ms)
{
    uint64_t until = clock_mono_us() + (uint64_t)ms * 1000;
    do {
        uint64_t now = clock_mono_us();
        demo__read(d, now >= until ? 0 : (int)((until - now + 999) / 1000));
        demo__control_lines(d);
    } while (!demo__stopped(d) && clock_mono_us() < until);
    return demo__stopped(d);
}

/* The next user line: the first, or a warm turn's next message. NULL when stdin ends first or it is
 * not a JSON object. */
static json_t *demo__user_line(struct demo *d)
{
    for (int first = d->conv[0] == '\0';;) {
        if (d->next) {
            json_t *j = d->next;
            d->next = NULL;
            return j;
        }
        char *nl;
        while ((nl = d->in.p ? memchr(d->in.p, '\n', d->in.len) : NULL) == NULL) {
            size_t before = d->in.len;
            demo__read(d, -1);
            if (d->in.len == before)
                return NULL;
        }
        json_t *j = json_loadb(d->in.p, (size_t)(nl - d->in.p), 0, NULL);
        buf_consume(&d->in, (size_t)(nl - d->in.p) + 1);
        if (first) /* the first line is the user's, whatever its type says */
            return json_is_object(j) ? j : (json_decref(j), NULL);
        demo__control(d, j); /* between turns: a late control line, or the next message */
        json_decref(j);
        if (d->cancelled)
            return NULL;
    }
}

/* ================= the conversation, kept under $HOME ================= */

static char *demo__state_path(const char *conv)
{
    const char *home = getenv("HOME");
    return home && *home ? xasprintf("%s/" DEMO_STATE_DIR "/%s.json", home, conv) : NULL;
}

/* Turns recorded for conv (0 when none). */
static long demo__turns(const char *conv)
{
    char *path = demo__state_path(conv);
    json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
    long n = (long)json_integer_value(json_object_get(j, "turns"));
    json_decref(j);
    free(path);
    return n;
}

static void demo__save_turns(const char *conv, long turns)
{
    char *path = demo__state_path(conv);
    if (path == NULL)
        return;
    char *dir = xstrndup(path, (size_t)(strrchr(path, '/') - path));
    (void)mkdir(getenv("HOME"), 0700); /* agentd makes the session's home; a bare run may not have it */
    (void)mkdir(dir, 0700);
    json_t *j = json_pack("{s:I}", "turns", (json_int_t)turns);
    if (json_dump_file(j, path, JSON_COMPACT) != 0)
        demo__log("warn", "cannot keep the conversation in %s: %s", path, strerror(errno));
    json_decref(j);
    free(dir);
    free(path);
}

/* Picks the conversation: the resumed one, a copy of it (fork), or a new one. */
static void demo__conversation(struct demo *d, const char *resume, int fork)
{
    long earlier = resume ? demo__turns(resume) : 0;
    if (resume && !fork) {
        snprintf(d->conv, sizeof d->conv, "%s", resume);
    } else {
        unsigned char r[8];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
            memset(r, 0, sizeof r);
        snprintf(d->conv, sizeof d->conv, "demo-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
                 r[4], r[5], r[6], r[7]);
    }
    d->turn = earlier + 1;
    demo__save_turns(d->conv, d->turn);
    demo__emit(json_pack("{s:s, s:s}", "type", "session", "id", d->conv));
}

/* ================= streaming and tools ================= */

/* Streams text as word deltas at the configured pace, then the whole message. 1 when cancelled. */
static int demo__say(struct demo *d, const char *text)
{
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, " \n");
        n += strspn(p + n, " \n"); /* a word and the spaces after it */
        demo__emit(json_pack("{s:s, s:s, s:s%}", "type", "delta", "kind", "text", "text", p, n));
        d->out_tokens++;
        p += n;
        if (demo__pause(d, d->delay_ms))
            return 1;
    }
    demo__emit(json_pack("{s:s, s:s, s:s}", "type", "message", "role", "assistant", "text", text));
    return 0;
}

/* Protocol 2: asks agentd before the tool that writes, when agentd wants to be asked. 1 when it may
 * go ahead; 0 with why (the denial's message) in out; -1 when the turn was stopped meanwhile. */
static int demo__ask(struct demo *d, const char *tool, json_t *input, struct buf *out)
{
    if (!d->approvals)
        return 1;
    char id[64];
    snprintf(id, sizeof id, "demo-%ld-%s", d->turn, tool);
    demo__emit(json_pack("{s:s, s:s, s:s, s:O}", "type", "permission_request", "request", id, "tool", tool,
                         "input", input));
    json_decref(d->answer);
    d->answer = NULL;
    while (!demo__stopped(d) && d->answer == NULL)
        demo__pause(d, 100);
    if (d->answer == NULL)
        return -1;
    const char *decision = json_string_value(json_object_get(d->answer, "decision"));
    if (decision && strcmp(decision, "allow") == 0)
        return 1;
    const char *why = json_string_value(json_object_get(d->answer, "message"));
    buf_printf(out, "not written: %s", why ? why : "the request was denied");
    return 0;
}

/* One tool call: pre_tool with input (taken), then post_tool with the real output. */
static void demo__tool(struct demo *d, const char *id, const char *name, json_t *input, const char *output,
                       int is_error)
{
    demo__emit(json_pack("{s:s, s:s, s:s, s:o}", "type", "pre_tool", "id", id, "name", name, "input", input));
    demo__pause(d, 3 * d->delay_ms); /* a tool takes a moment; a cancel is seen by the next step */
    demo__emit(json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "post_tool", "id", id, "name", name, "output",
                         output, "is_error", is_error));
}

struct demo_listing {
    size_t entries, dirs, files;
    long long bytes, largest_size;
    char largest[256];
};

static int demo__by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the workspace (names sorted, sizes) into out and counts it. */
static void demo__list(const char *ws, struct buf *out, struct demo_listing *l)
{
    DIR *dir = opendir(ws);
    if (dir == NULL) {
        buf_printf(out, "cannot list %s: %s\n", ws, strerror(errno));
        return;
    }
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        names = xrealloc(names, (l->entries + 1) * sizeof *names);
        names[l->entries++] = xstrdup(e->d_name);
    }
    closedir(dir);
    if (l->entries)
        qsort(names, l->entries, sizeof *names, demo__by_name);
    for (size_t i = 0; i < l->entries; i++) {
        struct stat st;
        char *path = xasprintf("%s/%s", ws, names[i]);
        int isdir = lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
        long long size = isdir ? 0 : (long long)st.st_size;
        if (i < DEMO_LIST_MAX)
            buf_printf(out, isdir ? "%s/\n" : "%s  %lld bytes\n", names[i], size);
        l->dirs += isdir;
        l->files += !isdir;
        l->bytes += size;
        if (!isdir && size > l->largest_size) {
            l->largest_size = size;
            snprintf(l->largest, sizeof l->largest, "%s", names[i]);
        }
        free(path);
        free(names[i]);
    }
    if (l->entries > DEMO_LIST_MAX)
        buf_printf(out, "... and %zu more\n", l->entries - DEMO_LIST_MAX);
    if (l->entries == 0)
        buf_puts(out, "(empty)\n");
    free(names);
}

/* The first lines of ws/name, or why it cannot be read. Returns 1 on error. */
static int demo__head(const char *ws, const char *name, struct buf *out)
{
    char *path = xasprintf("%s/%s", ws, name);
    FILE *f = fopen(path, "r");
    free(path);
    if (f == NULL) {
        buf_printf(out, "%s: %s", name, strerror(errno));
        return 1;
    }
    char line[512];
    for (int i = 0; i < 5 && fgets(line, sizeof line, f); i++)
        buf_append_utf8(out, line, strlen(line));
    fclose(f);
    return 0;
}

/* Appends a note for this turn to ws/demo-notes.md. Returns the file's size after, or -errno. */
static long long demo__write_note(struct demo *d, const char *note, struct buf *out)
{
    char *path = xasprintf("%s/" DEMO_NOTES, d->ws);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    free(path);
    struct stat st;
    long long rc = fd < 0 ? -errno : 0;
    if (fd >= 0 && (write(fd, note, strlen(note)) != (ssize_t)strlen(note) || fstat(fd, &st) != 0))
        rc = -errno;
    else if (fd >= 0)
        rc = (long long)st.st_size;
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        buf_printf(out, "cannot write " DEMO_NOTES ": %s", strerror((int)-rc));
    else
        buf_printf(out, "appended %zu bytes to " DEMO_NOTES " (now %lld bytes)", strlen(note), rc);
    return rc;
}

/* ================= one run ================= */

/* The text of the final answer: an echo of the message and what the tools found. */
static char *demo__reply(struct demo *d, const char *text, const struct demo_listing *l, long long notes)
{
    struct buf b = {0};
    size_t n = strlen(text), shown = n > 300 ? 300 : n;
    while (shown < n && shown > 0 && ((unsigned char)text[shown] & 0xc0) == 0x80)
        shown--; /* do not cut a UTF-8 sequence */
    buf_puts(&b, "You said: \"");
    buf_append_utf8(&b, text, shown);
    buf_printf(&b, "%s\" (message %ld of this conversation).\n\n", shown < n ? "..." : "", d->turn);
    buf_printf(&b, "Your workspace has **%zu %s** (%zu %s, %zu %s, %lld bytes)", l->entries,
               l->entries == 1 ? "entry" : "entries", l->dirs, l->dirs == 1 ? "directory" : "directories",
               l->files, l->files == 1 ? "file" : "files", l->bytes);
    if (l->largest[0])
        buf_printf(&b, "; the largest file is `%s` (%lld bytes)", l->largest, l->largest_size);
    buf_puts(&b, ".\n\n");
    if (notes >= 0)
        buf_printf(&b, "I added a line to `" DEMO_NOTES "`, which now holds %lld bytes.\n\n", notes);
    else
        buf_puts(&b, "I did not write to `" DEMO_NOTES "`: the write was not allowed.\n\n");
    if (d->steers.len) /* what came in while I worked (steer), taken into this very answer */
        buf_printf(&b, "While I worked you added: \"%.*s\". Noted.\n\n", (int)d->steers.len - 1, d->steers.p);
    buf_puts(&b, "I am agentd's built-in demo agent: no model and no API key, so this answer is put together "
                 "on the spot. Create a session with `claude-code`, `codex` or `opencode` for a real one.");
    return b.p;
}

/* Works through one message. Returns 1 when it was cancelled. */
static int demo__run(struct demo *d, const char *text)
{
    demo__log("info", "demo agent: message %ld of conversation %s", d->turn, d->conv);
    demo__log("warn", "no model is configured: this is the built-in demo agent, replies are made locally");
    if (demo__say(d, "Let me look at your workspace first."))
        return 1;
    struct buf out = {0};
    struct demo_listing l = {0};
    demo__list(d->ws, &out, &l);
    demo__tool(d, "call_1", "list_workspace", json_pack("{s:s}", "path", "."), out.p ? out.p : "", 0);
    buf_reset(&out);
    int missing = demo__head(d->ws, "README.md", &out);
    demo__tool(d, "call_2", "read_file", json_pack("{s:s}", "path", "README.md"), out.p ? out.p : "",
               missing);
    if (missing)
        demo__log("debug", "README.md is not in the workspace; going on without it");
    buf_reset(&out);
    char *note = xasprintf("- message %ld: %zu characters\n", d->turn, strlen(text));
    json_t *input = json_pack("{s:s, s:s}", "path", DEMO_NOTES, "content", note);
    int may = demo__ask(d, "write_file", input, &out);
    long long notes = may == 1 ? demo__write_note(d, note, &out) : -1;
    if (may >= 0)
        demo__tool(d, "call_3", "write_file", input, out.p ? out.p : "", notes < 0);
    else
        json_decref(input);
    free(note);
    buf_free(&out);
    if (demo__stopped(d))
        return 1;
    demo__log("error", "the pretend model API answered 429; retrying once");
    demo__emit(json_pack("{s:s, s:s, s:s, s:b}", "type", "error", "code", "demo_rate_limited", "message",
                         "The (pretend) model API asked to slow down; retried and went on.", "retryable", 1));
    char *reply = demo__reply(d, text, &l, notes);
    int cancelled = demo__say(d, reply);
    if (!cancelled) {
        json_int_t in = (json_int_t)(strlen(text) / 4 + 120), outt = (json_int_t)d->out_tokens;
        demo__emit(json_pack("{s:s, s:s, s:{s:I, s:I}, s:f, s:I, s:I}", "type", "result", "text", reply,
                             "usage", "input_tokens", in, "output_tokens", outt, "cost_usd",
                             (double)in * 3e-6 + (double)outt * 15e-6, "duration_ms",
                             (json_int_t)((clock_mono_us() - d->start_us) / 1000), "num_turns",
                             (json_int_t)d->turn));
    }
    free(reply);
    return cancelled;
}

/* One message: the conversation picked (first message) or continued (a warm process's next one),
 * the turn, and its result. Returns 1 when the process must end (cancel, EOF). */
static int demo__turn(struct demo *d, json_t *user, int first)
{
    const char *text = json_string_value(json_object_get(user, "text"));
    d->approvals = json_is_true(json_object_get(user, "approvals"));
    d->interrupted = 0;
    d->out_tokens = 0;
    d->start_us = clock_mono_us();
    buf_reset(&d->steers);
    d->delay_ms = d->base_delay_ms;
    if (text && strcasestr(text, "slow") && d->delay_ms < DEMO_SLOW_MS)
        d->delay_ms = DEMO_SLOW_MS; /* "slow" in the message: time to watch (or reload) mid-run */
    if (first) {
        const char *ws = json_string_value(json_object_get(user, "workspace"));
        d->ws_copy = ws && *ws ? xstrdup(ws) : NULL;
        d->ws = d->ws_copy ? d->ws_copy : ".";
        demo__conversation(d, json_string_value(json_object_get(user, "resume")),
                           json_is_true(json_object_get(user, "fork")));
    } else {
        demo__save_turns(d->conv, ++d->turn);
    }
    const char *run = json_string_value(json_object_get(user, "run"));
    demo__log("debug", "demo agent: run %s, conversation %s, workspace %s, %d ms per delta", run ? run : "?",
              d->conv, d->ws, d->delay_ms);
    if (demo__run(d, text ? text : "")) {
        demo__log("info",
                  d->cancelled ? "cancelled: stopping now" : "interrupted: waiting for the next message");
        demo__emit(json_pack("{s:s, s:b, s:s, s:b}", "type", "result", "is_error", 1, "text",
                             d->cancelled ? "cancelled" : "interrupted", "interrupted", !d->cancelled));
    }
    return d->cancelled;
}

int demo_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct demo d = {.delay_ms = DEMO_DELAY_DEFAULT_MS, .start_us = clock_mono_us()};
    const char *delay = getenv("AGENTD_DEMO_DELAY_MS");
    if (delay && *delay) {
        char *end;
        long v = strtol(delay, &end, 10);
        if (*end == '\0' && v >= 0 && v <= DEMO_DELAY_MAX_MS)
            d.delay_ms = (int)v;
    }
    d.base_delay_ms = d.delay_ms;
    json_t *user = demo__user_line(&d);
    if (user == NULL) {
        fprintf(stderr, "error: agentd demo-agent speaks doc/AGENT-PROTOCOL.md: the first stdin line must "
                        "be a JSON object {\"type\":\"user\",\"text\":...}\n");
        return 2;
    }
    /* Protocol 2: it can be asked, steered, interrupted, and stays for the next message (warm). */
    demo__emit(json_pack("{s:s, s:i, s:b, s:b, s:b, s:b}", "type", "capabilities", "protocol", 2, "approvals",
                         1, "steer", 1, "interrupt", 1, "warm", 1));
    for (int first = 1; user != NULL; first = 0) {
        int end = demo__turn(&d, user, first);
        json_decref(user);
        user = end ? NULL : demo__user_line(&d);
    }
    json_decref(d.answer);
    json_decref(d.next);
    buf_free(&d.in);
    buf_free(&d.steers);
    free(d.ws_copy);
    return 0;
}
