/* Unit tests for src/ui: path resolution (files, SPA fallback, refused paths), the embedded table
 * with its gzip and identity forms, --ui-dir, and the header parsers. The embedded table is this
 * file's own (the generated one is linked into the agentd binary only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ui/ui.h"
#include "tap.h"

static const char index_html[] = "<!doctype html><script type=module src=/assets/app-1a2b.js></script>";
static const char app_js[] = "console.log('app'); console.log('app'); console.log('app');";
static unsigned char index_gz[256], app_gz[256];

/* The table the generator would write, filled in by gz() before the first ui_new. */
struct ui_asset ui_assets[] = {
    {"/assets/app-1a2b.js", app_gz, 0, sizeof app_js - 1, "apphash"},
    {"/index.html", index_gz, 0, sizeof index_html - 1, "indexhash"},
};
const size_t ui_assets_count = CORE_ARRAY_LEN(ui_assets);

static size_t gz(const char *in, size_t n, unsigned char *out, size_t cap)
{
    z_stream zs = {0};
    deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_FINISH);
    deflateEnd(&zs);
    return zs.total_out;
}

static enum ui_status get(struct ui *ui, const char *path, int gzip, struct ui_file *f)
{
    const char *why = NULL;
    return ui_get(ui, path, strlen(path), gzip, f, &why);
}

static void test_embedded(void)
{
    ui_assets[0].gz_len = gz(app_js, sizeof app_js - 1, app_gz, sizeof app_gz);
    ui_assets[1].gz_len = gz(index_html, sizeof index_html - 1, index_gz, sizeof index_gz);
    struct ui *ui;
    char err[256];
    if (!ok(ui_new(&ui, NULL, err, sizeof err) == 0, "ui_new with the embedded table"))
        return;
    is_str(ui_describe(ui), "embedded (2 files)", "it describes its source");
    struct ui_file f;
    is_int(get(ui, "/", 1, &f), UI_OK, "/ resolves");
    ok(f.gzip && f.data == index_gz && f.len == ui_assets[1].gz_len, "/ is index.html, gzip as stored");
    is_str(f.etag, "\"indexhash.gz\"", "the gzip form's ETag is the hash plus .gz");
    is_int(f.cache, UI_CACHE_REVALIDATE, "index.html is revalidated");
    is_str(f.content_type, "text/html; charset=utf-8", "index.html is HTML");
    ui_file_release(&f);
    is_int(get(ui, "/index.html", 0, &f), UI_OK, "/index.html for a client without gzip");
    ok(!f.gzip && f.len == sizeof index_html - 1 && memcmp(f.data, index_html, f.len) == 0,
       "without gzip the file is inflated to its own bytes");
    is_str(f.etag, "\"indexhash\"", "the identity form's ETag is the hash");
    ui_file_release(&f);
    is_int(get(ui, "/assets/app-1a2b.js", 0, &f), UI_OK, "a hashed asset resolves");
    ok(f.len == sizeof app_js - 1 && !memcmp(f.data, app_js, f.len), "its bytes inflate right");
    is_int(f.cache, UI_CACHE_IMMUTABLE, "a hashed asset is cached for good");
    is_str(f.content_type, "text/javascript; charset=utf-8", "a .js file is JavaScript");
    ui_file_release(&f);
    is_int(get(ui, "/assets/gone-0000.js", 1, &f), UI_NOT_FOUND, "an unknown asset is not found (no HTML)");
    static const char *const routes[] = {"/s/abc", "/s/abc/chat", "/s/abc?x", "/anything/deep/", "/s/%41"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(routes); i++) {
        is_int(get(ui, routes[i], 1, &f), UI_OK, "client route %s resolves", routes[i]);
        ok(f.data == index_gz && f.cache == UI_CACHE_REVALIDATE, "%s gets index.html, revalidated",
           routes[i]);
        ui_file_release(&f);
    }
    static const char *const bad[] = {"/../etc/passwd",
                                      "/assets/../index.html",
                                      "/%2e%2e/x",
                                      "/a/%2E/b",
                                      "/a%00b",
                                      "/a%5cb",
                                      "/a\\b",
                                      "/%zz",
                                      "/%4",
                                      "relative",
                                      ""};
    for (size_t i = 0; i < CORE_ARRAY_LEN(bad); i++)
        is_int(get(ui, bad[i], 1, &f), UI_BAD_PATH, "path '%s' is refused", bad[i]);
    ui_free(ui);
    ui_free(NULL);
}

static void put(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

static void test_dir(void)
{
    char root[] = "/tmp/test_ui.XXXXXX", path[512], err[256];
    if (!ok(mkdtemp(root) != NULL, "temp dir"))
        return;
    snprintf(path, sizeof path, "%s/dist", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/dist/assets", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/dist/index.html", root);
    put(path, "<p>v1</p>");
    snprintf(path, sizeof path, "%s/dist/assets/a-1.css", root);
    put(path, "p{}");
    snprintf(path, sizeof path, "%s/secret.txt", root);
    put(path, "outside");
    snprintf(path, sizeof path, "%s/dist/assets/link.txt", root);
    char target[512];
    snprintf(target, sizeof target, "%s/secret.txt", root);
    ok(symlink(target, path) == 0, "a symlink from the dir to a file outside it");

    struct ui *ui;
    snprintf(path, sizeof path, "%s/missing", root);
    ok(ui_new(&ui, path, err, sizeof err) < 0 && strstr(err, "--ui-dir") != NULL,
       "a missing --ui-dir is refused with a message (%s)", err);
    snprintf(path, sizeof path, "%s/dist", root);
    if (!ok(ui_new(&ui, path, err, sizeof err) == 0, "ui_new with a directory"))
        return;
    struct ui_file f;
    is_int(get(ui, "/", 1, &f), UI_OK, "/ reads index.html from the directory");
    ok(!f.gzip && f.len == 9 && !memcmp(f.data, "<p>v1</p>", 9), "as it is on disk, not compressed");
    char etag1[sizeof f.etag];
    snprintf(etag1, sizeof etag1, "%s", f.etag);
    ui_file_release(&f);
    snprintf(path, sizeof path, "%s/dist/index.html", root);
    put(path, "<p>v2</p>");
    is_int(get(ui, "/s/x/chat", 1, &f), UI_OK, "a client route reads index.html again");
    ok(f.len == 9 && !memcmp(f.data, "<p>v2</p>", 9) && strcmp(f.etag, etag1) != 0,
       "a rebuilt file is served at once, with a new ETag");
    ui_file_release(&f);
    is_int(get(ui, "/assets/a-1.css", 1, &f), UI_OK, "an asset from the directory");
    is_str(f.content_type, "text/css; charset=utf-8", "CSS is CSS");
    ui_file_release(&f);
    is_int(get(ui, "/assets/link.txt", 1, &f), UI_BAD_PATH, "a symlink out of the directory is refused");
    is_int(get(ui, "/assets/../../secret.txt", 1, &f), UI_BAD_PATH, "../ out of the directory is refused");
    is_int(get(ui, "/assets/none.js", 1, &f), UI_NOT_FOUND, "a missing asset is not found");
    unlink(path);
    is_int(get(ui, "/", 1, &f), UI_NOT_FOUND, "without index.html there is nothing to serve");
    ui_free(ui);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ok(system(cmd) == 0, "cleaned up");
}

static void test_headers(void)
{
    static const struct {
        const char *value;
        int gzip;
    } ae[] = {
        {"gzip", 1},
        {"gzip, deflate, br", 1},
        {"br;q=1.0, gzip;q=0.8", 1},
        {"GZIP", 1},
        {"deflate", 0},
        {"gzip;q=0", 0},
        {"gzip; q=0.000", 0},
        {"*", 1},
        {"*;q=0", 0},
        {"identity", 0},
        {"", 0},
        {"x-gzip", 1},
        {"*, gzip;q=0", 0},
        {"gzipx", 0},
        {" gzip ;q=0.5", 1},
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(ae); i++)
        is_int(ui_accepts_gzip(ae[i].value, strlen(ae[i].value)), ae[i].gzip, "Accept-Encoding '%s'",
               ae[i].value);
    static const struct {
        const char *value;
        int match;
    } inm[] = {
        {"\"abc\"", 1}, {"W/\"abc\"", 1}, {"\"x\", \"abc\"", 1}, {"*", 1}, {"\"abc.gz\"", 0},
        {"abc", 0},     {"", 0},
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(inm); i++)
        is_int(ui_etag_matches(inm[i].value, strlen(inm[i].value), "\"abc\""), inm[i].match,
               "If-None-Match '%s'", inm[i].value);
    is_str(ui_content_type("/favicon.svg"), "image/svg+xml", "svg");
    is_str(ui_content_type("/a.b/c"), "application/octet-stream", "no extension after the last slash");
}

int main(void)
{
    test_embedded();
    test_dir();
    test_headers();
    return done_testing();
}
