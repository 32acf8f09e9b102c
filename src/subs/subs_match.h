/*
 * subs_match — the pure rules deciding what a subscription may touch: which stream paths a glob
 * pattern links, and which webhook URLs and peer addresses a delivery may reach (the SSRF guard).
 * No I/O (except that the first subs_url_check loads libcurl for its URL parser), no allocation
 * beyond what the caller frees; fuzzable and unit-tested.
 *
 * Glob patterns and paths are '/'-separated; leading, trailing and repeated slashes are ignored.
 * A `*` segment matches exactly one segment, a `**` segment any number (zero included); a literal
 * segment matches itself, with "%2A" standing for a literal '*'.
 */
#ifndef AGENTD_SUBS_MATCH_H
#define AGENTD_SUBS_MATCH_H

#include <stddef.h>
#include <sys/socket.h>

/* 1 when path matches pattern (both NUL-terminated), else 0. */
int subs_glob_match(const char *pattern, const char *path);

/* Strips leading and trailing slashes in place and returns s. */
char *subs_path_trim(char *s);

/*
 * Checks a webhook URL before it is stored. Returns NULL when acceptable, else a static reason
 * (the caller answers 400 WEBHOOK_URL_REJECTED). Accepted: https to a public host, and plain http
 * to localhost, 127.0.0.0/8 or [::1] for development; *loopback_only is set for the latter so the
 * connection check (subs_addr_allowed) admits loopback peers only. The URL is parsed by libcurl,
 * loaded on the first call; when libcurl is missing every URL is rejected (and an error logged).
 */
const char *subs_url_check(const char *url, int *loopback_only);

/*
 * The connect-time half of the SSRF guard, applied to every address a delivery connects to (so a
 * public name that resolves to a private address is refused too). Returns 1 when allowed: with
 * loopback_only, loopback addresses only; otherwise only globally routable ones (no loopback,
 * private, link-local, CGNAT, unspecified, multicast or unique-local ranges).
 */
int subs_addr_allowed(const struct sockaddr *sa, int loopback_only);

#endif
