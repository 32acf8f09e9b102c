/*
 * ui_http — serves the dashboard (ui.h) at `/`: every path no other route claims. Paths under /v1
 * stay the API's: an unknown one is a 404 JSON error as before, after the server token check. The
 * dashboard's own files are public (the page asks for the token itself), so the route does its own
 * authentication.
 *
 * Every response of the route carries a strict Content-Security-Policy: scripts, styles and
 * connections from this origin only, no inline script, no plugins, no framing; and no Referer, so
 * a ?share= token in the address never leaks to another site.
 */
#include "ui/ui.h"
#include "ui/ui_http.h"
#include "http/http.h"

#include <string.h>

static const char ui__csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                              "img-src 'self' data:; font-src 'self'; object-src 'none'; base-uri 'none'; "
                              "form-action 'self'; frame-ancestors 'none'";

static void ui__policy_headers(struct http_req *req)
{
    http_res_header(req, "Content-Security-Policy", ui__csp);
    http_res_header(req, "Referrer-Policy", "no-referrer");
    http_res_header(req, "X-Frame-Options", "DENY");
}

static int ui__is_api(const char *path, size_t len)
{
    return len >= 3 && memcmp(path, "/v1", 3) == 0 && (len == 3 || path[3] == '/');
}

static void ui__handle(struct http_req *req, void *arg)
{
    struct ui *ui = arg;
    size_t plen, alen = 0, nlen = 0;
    const char *path = http_req_path(req, &plen);
    if (ui__is_api(path, plen)) {
        if (!http_req_authorized(req))
            return http_res_unauthorized(req);
        return http_res_error(req, ERR_NOT_FOUND, "no such resource: %.*s", (int)(plen > 200 ? 200 : plen),
                              path);
    }
    ui__policy_headers(req);
    enum http_method m = http_req_method(req);
    if (m != HTTP_GET && m != HTTP_HEAD) {
        http_res_header(req, "Allow", "GET, HEAD");
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "the dashboard is read with GET");
    }
    const char *ae = http_req_header(req, "accept-encoding", &alen);
    struct ui_file f;
    const char *why = NULL;
    switch (ui_get(ui, path, plen, ae && ui_accepts_gzip(ae, alen), &f, &why)) {
    case UI_OK: break;
    case UI_NOT_FOUND: return http_res_error(req, ERR_NOT_FOUND, "%s", why);
    case UI_BAD_PATH: return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    case UI_ERROR: return http_res_error(req, ERR_INTERNAL, "%s", why);
    }
    http_res_header(req, "ETag", f.etag);
    http_res_header(req, "Vary", "Accept-Encoding");
    http_res_header(req, "Cache-Control",
                    f.cache == UI_CACHE_IMMUTABLE ? "public, max-age=31536000, immutable" : "no-cache");
    const char *inm = http_req_header(req, "if-none-match", &nlen);
    if (inm && ui_etag_matches(inm, nlen, f.etag)) {
        ui_file_release(&f);
        return http_res_send(req, 304, NULL, 0);
    }
    http_res_header(req, "Content-Type", f.content_type);
    if (f.gzip)
        http_res_header(req, "Content-Encoding", "gzip");
    http_res_send(req, 200, f.data, f.len); /* copies the body */
    ui_file_release(&f);
}

void ui_routes(struct ui *ui, struct http_server *srv)
{
    http_route_flags(srv, "/", ui__handle, ui, HTTP_ROUTE_OWN_AUTH);
}
