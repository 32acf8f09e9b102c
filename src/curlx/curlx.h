/*
 * curlx — libcurl, loaded at run time. The binary does not link libcurl: curlx_load dlopen()s
 * libcurl.so.4 on first use and resolves the functions agentd calls, so `agentd serve` maps libcurl
 * and its dependency chain (TLS, Kerberos, LDAP, SSH: several MiB of resident pages) only once it
 * sends a webhook or checks a webhook URL, while the client subcommands load it when they start.
 *
 * Each curlx_<name> below is libcurl's curl_<name>, same arguments, same result, same ownership
 * rules; libcurl's types and constants come from <curl/curl.h>, which is needed at build time only.
 *
 * Invariants:
 *   - no curlx_<name> may be called before curlx_load returned 0 (they are NULL until then);
 *   - once loaded, libcurl stays loaded until exit: it is never dlclose()d, because OpenSSL and
 *     libcurl keep process-wide state that does not survive an unload;
 *   - single-threaded use: agentd calls libcurl from one thread (the server's loop or the client);
 *   - curlx_load does not call curl_global_init: its callers pair curlx_global_init and
 *     curlx_global_cleanup as libcurl documents.
 */
#ifndef AGENTD_CURLX_H
#define AGENTD_CURLX_H

#include <curl/curl.h>

#include "core/core.h"

/* What the client prints and the server logs when libcurl is missing. */
#define CURLX_MISSING_HINT "libcurl (libcurl4) is not installed: apt-get install libcurl4"

/*
 * Loads libcurl and resolves every function below, all or none; once it has succeeded, later calls
 * return 0 at once. Returns 0, or -ENOENT when libcurl.so.4 cannot be loaded or lacks one of the
 * functions (older than 7.62, the URL API). A failed load leaves nothing mapped and is tried again
 * on the next call, so installing libcurl4 fixes a running server without a restart.
 */
int curlx_load(void) CORE_UNUSED_RESULT;
/* Why the last curlx_load failed (the loader's message), or "" if it has not failed. Static. */
const char *curlx_load_error(void);

/*
 * libcurl's functions, each typed from <curl/curl.h> itself: curlx_<name> points at curl_<name>
 * once curlx_load has returned 0, and is NULL before; only curlx_load writes them. Calls read
 * exactly like libcurl's, variadic ones included, since each pointer has the very function type.
 * The compile-time option checks of <curl/typecheck-gcc.h> apply to libcurl's own names only, so
 * pass curlx_easy_setopt exactly the type libcurl reads: 1L, not 1; (curl_off_t)n for *_LARGE.
 */

/* ================= global state ================= */
extern __typeof__(curl_global_init) *curlx_global_init;
extern __typeof__(curl_global_cleanup) *curlx_global_cleanup;
extern __typeof__(curl_free) *curlx_free;

/* ================= easy handles ================= */
extern __typeof__(curl_easy_init) *curlx_easy_init;
extern __typeof__(curl_easy_cleanup) *curlx_easy_cleanup;
extern __typeof__(curl_easy_reset) *curlx_easy_reset;
extern __typeof__(curl_easy_perform) *curlx_easy_perform;
extern __typeof__(curl_easy_strerror) *curlx_easy_strerror;
extern __typeof__(curl_easy_setopt) *curlx_easy_setopt;
extern __typeof__(curl_easy_getinfo) *curlx_easy_getinfo;

/* ================= multi handles ================= */
extern __typeof__(curl_multi_init) *curlx_multi_init;
extern __typeof__(curl_multi_cleanup) *curlx_multi_cleanup;
extern __typeof__(curl_multi_setopt) *curlx_multi_setopt;
extern __typeof__(curl_multi_add_handle) *curlx_multi_add_handle;
extern __typeof__(curl_multi_remove_handle) *curlx_multi_remove_handle;
extern __typeof__(curl_multi_assign) *curlx_multi_assign;
extern __typeof__(curl_multi_socket_action) *curlx_multi_socket_action;
extern __typeof__(curl_multi_info_read) *curlx_multi_info_read;

/* ================= header lists ================= */
extern __typeof__(curl_slist_append) *curlx_slist_append;
extern __typeof__(curl_slist_free_all) *curlx_slist_free_all;

/* ================= URL parsing ================= */
extern __typeof__(curl_url) *curlx_url;
extern __typeof__(curl_url_cleanup) *curlx_url_cleanup;
extern __typeof__(curl_url_get) *curlx_url_get;
extern __typeof__(curl_url_set) *curlx_url_set;

#endif
