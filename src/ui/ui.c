/* ui — the dashboard's files: embedded, from a directory, or the built-without page. See ui.h. */
#include "ui/ui.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The generated table (build/<mode>/gen/ui_assets.c). Weak: only the agentd binary links it, and a
 * `make UI=0` binary does not, in which case both addresses are NULL. */
extern const struct ui_asset ui_assets[] __attribute__((weak));
extern const size_t ui_assets_count __attribute__((weak));

#define UI_MAX_PATH      1024
#define UI_MAX_FILE      (64u << 20) /* a --ui-dir file larger than this is refused */
#define UI_ASSETS_PREFIX "/assets/"

struct ui {
    char *dir; /* realpath of --ui-dir, NULL when embedded */
    const struct ui_asset *assets;
    size_t nassets;
    void **inflated; /* per asset: its identity bytes, inflated on first need and kept */
    char desc[PATH_MAX + 32];
};

/* The page a binary built with `make UI=0` serves in place of the dashboard. */
static const char ui__without[] =
    "<!doctype html><meta charset=\"utf-8\"><title>agentd</title><p>This agentd was built without its "
    "dashboard (make UI=0). The HTTP API is at /v1/; see README.md.</p>\n";

int ui_new(struct ui **out, const char *dir, char *err, size_t errlen)
{
    struct ui *ui = xcalloc(1, sizeof *ui);
    if (dir) {
        char real[PATH_MAX];
        struct stat st;
        if (realpath(dir, real) == NULL || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            int e = errno ? errno : ENOTDIR;
            snprintf(err, errlen, "--ui-dir %s: %s", dir, strerror(e));
            free(ui);
            return -e;
        }
        ui->dir = xstrdup(real);
        snprintf(ui->desc, sizeof ui->desc, "directory %s", real);
    } else if (&ui_assets_count != NULL && ui_assets_count > 0) {
        ui->assets = ui_assets;
        ui->nassets = ui_assets_count;
        ui->inflated = xcalloc(ui->nassets, sizeof *ui->inflated);
        snprintf(ui->desc, sizeof ui->desc, "embedded (%zu files)", ui->nassets);
    } else {
        snprintf(ui->desc, sizeof ui->desc, "none (built with UI=0)");
    }
    *out = ui;
    return 0;
}

void ui_free(struct ui *ui)
{
    if (ui == NULL)
        return;
    for (size_t i = 0; ui->inflated && i < ui->nassets; i++)
        free(ui->inflated[i]);
    free(ui->inflated);
    free(ui->dir);
    free(ui);
}

const char *ui_describe(const struct ui *ui) { return ui->desc; }

void ui_file_release(struct ui_file *f)
{
    free(f->owned);
    f->owned = NULL;
}

/* ================= header values ================= */

static int ui__ieq(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static const char *ui__trim(const char *p, const char *end, size_t *n)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *n = (size_t)(end - p);
    return p;
}

/* q=0 (or 0.0, 0.00, 0.000) in the parameters of one list element. */
static int ui__q_zero(const char *p, const char *end)
{
    while ((p = memchr(p, ';', (size_t)(end - p))) != NULL) {
        p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        size_t n;
        const char *param = ui__trim(p, semi ? semi : end, &n);
        if (n >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
            for (size_t i = 2; i < n; i++)
                if (param[i] != '0' && param[i] != '.')
                    return 0;
            return 1;
        }
    }
    return 0;
}

int ui_accepts_gzip(const char *value, size_t len)
{
    const char *p = value, *end = value + len;
    int gzip = -1, star = -1;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *next = comma ? comma : end;
        const char *semi = memchr(p, ';', (size_t)(next - p));
        size_t n;
        const char *name = ui__trim(p, semi ? semi : next, &n);
        int accepted = !ui__q_zero(p, next);
        if (ui__ieq(name, n, "gzip") || ui__ieq(name, n, "x-gzip"))
            gzip = accepted;
        else if (ui__ieq(name, n, "*"))
            star = accepted;
        p = comma ? comma + 1 : end;
    }
    return gzip >= 0 ? gzip : star > 0;
}

int ui_etag_matches(const char *value, size_t len, const char *etag)
{
    const char *p = value, *end = value + len;
    size_t elen = strlen(etag);
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n;
        const char *tag = ui__trim(p, comma ? comma : end, &n);
        if (n == 1 && tag[0] == '*')
            return 1;
        if (n >= 2 && tag[0] == 'W' && tag[1] == '/')
            tag += 2, n -= 2;
        if (n == elen && memcmp(tag, etag, n) == 0)
            return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

const char *ui_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".woff", "font/woff"},
        {".txt", "text/plain; charset=utf-8"},
        {".wasm", "application/wasm"},
    };
    const char *slash = strrchr(name, '/'), *dot = strrchr(slash ? slash : name, '.');
    for (size_t i = 0; dot && i < CORE_ARRAY_LEN(types); i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* ================= resolving a path ================= */

/* Percent-decodes a request path into out (UI_MAX_PATH bytes) and checks it: absolute, no NUL, no
 * backslash, no "." or ".." segment. NULL when it is acceptable, else why not. */
static const char *ui__clean_path(const char *path, size_t len, char *out)
{
    size_t n = 0;
    if (len == 0 || path[0] != '/')
        return "the path must start with /";
    for (size_t i = 0; i < len; i++) {
        char c = path[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_digit(path[i + 1]) : -1, lo = hi >= 0 ? hex_digit(path[i + 2]) : -1;
            if (lo < 0)
                return "the path has a malformed percent escape";
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || c == '\\')
            return "the path holds a NUL byte or a backslash";
        if (n + 1 >= UI_MAX_PATH)
            return "the path is too long";
        out[n++] = c;
    }
    out[n] = '\0';
    for (const char *seg = out; seg; seg = strchr(seg + 1, '/')) {
        size_t sl = strcspn(seg + 1, "/");
        if ((sl == 1 && seg[1] == '.') || (sl == 2 && seg[1] == '.' && seg[2] == '.'))
            return "the path has a . or .. segment";
    }
    return NULL;
}

static void ui__etag(struct ui_file *f, const char *hash, int gzip)
{
    snprintf(f->etag, sizeof f->etag, "\"%s%s\"", hash, gzip ? ".gz" : "");
}

/* The identity bytes of embedded asset i: inflated once, kept for the life of ui. */
static const void *ui__inflated(struct ui *ui, size_t i)
{
    if (ui->inflated[i])
        return ui->inflated[i];
    const struct ui_asset *a = &ui->assets[i];
    unsigned char *raw = xmalloc(a->raw_len ? a->raw_len : 1);
    z_stream zs = {0};
    int rc = inflateInit2(&zs, 16 + MAX_WBITS);
    if (rc == Z_OK) {
        zs.next_in = (unsigned char *)a->gz;
        zs.avail_in = (uInt)a->gz_len;
        zs.next_out = raw;
        zs.avail_out = (uInt)a->raw_len;
        rc = inflate(&zs, Z_FINISH);
        inflateEnd(&zs);
    }
    if (rc != Z_STREAM_END || zs.total_out != a->raw_len) {
        free(raw); /* the generator wrote what it measured: only a corrupt build gets here */
        log_error("ui: embedded %s does not inflate to %zu bytes", a->path, a->raw_len);
        return NULL;
    }
    ui->inflated[i] = raw;
    return raw;
}

static enum ui_status ui__embedded(struct ui *ui, const char *path, int accept_gzip, struct ui_file *out,
                                   const char **why)
{
    for (size_t i = 0; i < ui->nassets; i++) {
        const struct ui_asset *a = &ui->assets[i];
        if (strcmp(a->path, path) != 0)
            continue;
        out->content_type = ui_content_type(a->path);
        out->gzip = accept_gzip;
        out->data = accept_gzip ? (const void *)a->gz : ui__inflated(ui, i);
        out->len = accept_gzip ? a->gz_len : a->raw_len;
        ui__etag(out, a->etag, accept_gzip);
        if (out->data == NULL) {
            *why = "the embedded file is corrupt";
            return UI_ERROR;
        }
        return UI_OK;
    }
    *why = "no such file";
    return UI_NOT_FOUND;
}

/* Reads root+path if it is a regular file that stays inside root. UI_NOT_FOUND when there is none. */
static enum ui_status ui__from_dir(struct ui *ui, const char *path, struct ui_file *out, const char **why)
{
    char *full = xasprintf("%s%s", ui->dir, path), real[PATH_MAX];
    size_t rl = strlen(ui->dir);
    struct stat st;
    int fd = -1;
    enum ui_status status = UI_NOT_FOUND;
    *why = "no such file";
    if (realpath(full, real) == NULL || stat(real, &st) != 0 || !S_ISREG(st.st_mode))
        goto fail;
    if (strncmp(real, ui->dir, rl) != 0 || real[rl] != '/') {
        *why = "the file lies outside --ui-dir";
        status = UI_BAD_PATH;
        goto fail;
    }
    status = UI_ERROR;
    *why = "the file cannot be read";
    if (st.st_size > (off_t)UI_MAX_FILE || (fd = open(real, O_RDONLY | O_CLOEXEC)) < 0)
        goto fail;
    char *data = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    ssize_t r = 0;
    while (got < (size_t)st.st_size && (r = read(fd, data + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)r;
    if (r < 0) {
        free(data);
        goto fail;
    }
    unsigned char hash[16];
    char hex[33];
    crypto_generichash(hash, sizeof hash, (const unsigned char *)data, got, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    out->owned = data;
    out->data = data;
    out->len = got;
    out->gzip = 0;
    out->content_type = ui_content_type(real);
    ui__etag(out, hex, 0);
    status = UI_OK;
fail:
    if (fd >= 0)
        close(fd);
    free(full);
    return status;
}

static enum ui_status ui__lookup(struct ui *ui, const char *path, int accept_gzip, struct ui_file *out,
                                 const char **why)
{
    if (ui->dir)
        return ui__from_dir(ui, path, out, why);
    if (ui->nassets)
        return ui__embedded(ui, path, accept_gzip, out, why);
    if (strcmp(path, "/index.html") != 0) {
        *why = "no such file";
        return UI_NOT_FOUND;
    }
    out->content_type = "text/html; charset=utf-8";
    out->data = ui__without;
    out->len = sizeof ui__without - 1;
    ui__etag(out, "built-without-ui", 0);
    return UI_OK;
}

enum ui_status ui_get(struct ui *ui, const char *path, size_t len, int accept_gzip, struct ui_file *out,
                      const char **why)
{
    char clean[UI_MAX_PATH];
    memset(out, 0, sizeof *out);
    if ((*why = ui__clean_path(path, len, clean)) != NULL)
        return UI_BAD_PATH;
    int asset = strncmp(clean, UI_ASSETS_PREFIX, strlen(UI_ASSETS_PREFIX)) == 0;
    const char *want = strcmp(clean, "/") == 0 ? "/index.html" : clean;
    enum ui_status st = ui__lookup(ui, want, accept_gzip, out, why);
    if (st == UI_NOT_FOUND && !asset) {
        /* A client route of the single-page app: the app itself reads the path. */
        st = ui__lookup(ui, "/index.html", accept_gzip, out, why);
        if (st == UI_NOT_FOUND)
            *why = "the dashboard has no index.html";
    }
    if (st == UI_OK)
        out->cache = asset ? UI_CACHE_IMMUTABLE : UI_CACHE_REVALIDATE;
    return st;
}
