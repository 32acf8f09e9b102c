/*
 * ui — the web dashboard's files (web/, built by Vite into web/dist): where they come from and
 * which bytes, type, validator and cache policy each request path gets. ui_http.c serves them at
 * `/`. No HTTP numbers here.
 *
 * Three sources:
 *   - embedded (the default): `make` gzips web/dist into a generated table (build/<mode>/gen/
 *     ui_assets.c, see scripts/ui-embed.sh) linked into the agentd binary only. The table is
 *     referenced weakly, so libraries, unit tests and fuzz targets link without it; a binary
 *     built with `make UI=0` has no table and serves one page saying so.
 *   - a directory (`--ui-dir DIR`, for development with `vite build --watch`): files are read
 *     from disk on every request, never cached, never followed outside DIR.
 *   - none (`--no-ui`): the caller registers no route at all.
 *
 * Path rules (ui_get): "/" is /index.html. A path that names a file gets it. A path under
 * /assets/ that names no file is not found (a stale page must not get HTML for its script). Any
 * other path is a client route of the single-page app (/s/<id>, /s/<id>/chat, ...) and gets
 * index.html. Paths with "." or ".." segments, backslashes or NUL bytes are refused. Files under
 * /assets/ carry content hashes in their names (Vite's default), so they may be cached forever;
 * everything else must be revalidated (ETag).
 */
#ifndef AGENTD_UI_H
#define AGENTD_UI_H

#include <stddef.h>

#include "core/core.h"

/* One embedded file, as the generator writes it. */
struct ui_asset {
    const char *path;        /* "/index.html", "/assets/index-4f1c2a.js" */
    const unsigned char *gz; /* the file, gzip-compressed */
    size_t gz_len;
    size_t raw_len;   /* its size uncompressed */
    const char *etag; /* a hash of the uncompressed bytes, unquoted */
};

struct ui;

/* dir NULL: the embedded files (or the built-without page). dir: serve that directory, which must
 * exist. Returns 0, or -errno with a message in err. Free with ui_free. */
int ui_new(struct ui **out, const char *dir, char *err, size_t errlen) CORE_UNUSED_RESULT;
void ui_free(struct ui *ui);
/* Where files come from, for the log: "embedded (N files)", "directory DIR", "none (built with
 * UI=0)". Borrowed from ui. */
const char *ui_describe(const struct ui *ui);

enum ui_status {
    UI_OK,
    UI_NOT_FOUND, /* under /assets/, or index.html missing from --ui-dir */
    UI_BAD_PATH,  /* a refused path: traversal, NUL, backslash */
    UI_ERROR,     /* a directory file could not be read */
};

enum ui_cache {
    UI_CACHE_IMMUTABLE,  /* hashed asset: cache for a year */
    UI_CACHE_REVALIDATE, /* index.html and unhashed files: always revalidate */
};

/* A resolved file. Its bytes are borrowed from ui, or owned (a --ui-dir read, an inflated copy):
 * release with ui_file_release either way. */
struct ui_file {
    const char *content_type;
    const void *data;
    size_t len;
    int gzip;      /* data is gzip-compressed (send Content-Encoding: gzip) */
    char etag[72]; /* quoted, differs between the gzip and the identity form */
    enum ui_cache cache;
    void *owned;
};

/*
 * Resolves a request path (as sent: percent-encoded, without the query). accept_gzip: the client
 * takes gzip, so the embedded compressed bytes go out as they are; otherwise they are inflated.
 * On UI_OK fills out; otherwise *why says why in a sentence.
 */
enum ui_status ui_get(struct ui *ui, const char *path, size_t len, int accept_gzip, struct ui_file *out,
                      const char **why);
void ui_file_release(struct ui_file *f);

/* Content-Type for a file name by its extension (application/octet-stream when unknown). */
const char *ui_content_type(const char *name);
/* Does an Accept-Encoding value accept gzip (a gzip or * coding whose q is not 0)? */
int ui_accepts_gzip(const char *value, size_t len);
/* Does an If-None-Match value (a list of entity tags, or *) match etag (quoted)? Weak comparison,
 * as RFC 9110 asks for If-None-Match. */
int ui_etag_matches(const char *value, size_t len, const char *etag);

#endif
