/*
 * subs_config — a subscription's configuration: the body a client sends (PUT) and the state stream
 * records, checked in the order clients see its refusals, parsed into a fresh struct subs_sub, written
 * back as JSON, and hashed so that re-sending the same subscription confirms it.
 *
 * Pure: nothing here touches the registry, the streams or the clock; subs.c registers what
 * subs__parse_config returns and records subs__config_json's form of it.
 */
#include "subs/subs_int.h"
#include "subs/subs_match.h"
#include "stream/stream_parse.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static char *subs__opt_string(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return NULL;
    return xstrdup(json_string_value(v));
}

static int subs__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The configuration as recorded in the state stream (parsed back by subs__parse_config). */
json_t *subs__config_json(const struct subs_sub *sub)
{
    json_t *c = json_object(), *streams = json_array();
    for (size_t i = 0; i < sub->nstreams; i++)
        json_array_append_new(streams, json_string(sub->streams[i]));
    json_object_set_new(c, "type", json_string(sub->type == SUBS_WEBHOOK ? "webhook" : "pull-wake"));
    json_object_set_new(c, "streams", streams);
    json_object_set_new(c, "lease_ttl_ms", json_integer(sub->lease_ttl_ms));
    if (sub->pattern)
        json_object_set_new(c, "pattern", json_string(sub->pattern));
    if (sub->webhook_url)
        json_object_set_new(c, "webhook", json_pack("{s:s}", "url", sub->webhook_url));
    if (sub->wake_stream)
        json_object_set_new(c, "wake_stream", json_string(sub->wake_stream));
    if (sub->description)
        json_object_set_new(c, "description", json_string(sub->description));
    return c;
}

/* The config hash: BLAKE2b-256 of the canonical configuration (sorted keys, sorted unique
 * streams), so re-sending the same subscription confirms it and anything else conflicts. */
static void subs__hash(struct subs_sub *sub)
{
    json_t *c = subs__config_json(sub), *streams = json_array();
    char **sorted = xcalloc(sub->nstreams + 1, sizeof *sorted);
    memcpy(sorted, sub->streams, sub->nstreams * sizeof *sorted);
    qsort(sorted, sub->nstreams, sizeof *sorted, subs__cmp_str);
    for (size_t i = 0; i < sub->nstreams; i++)
        if (i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0)
            json_array_append_new(streams, json_string(sorted[i]));
    free(sorted);
    json_object_set_new(c, "streams", streams);
    char *text = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)text, strlen(text), NULL, 0);
    sodium_bin2hex(sub->hash, sizeof sub->hash, h, sizeof h);
    free(text);
    json_decref(c);
}

/* A stream path as a subscription names it, without leading and trailing slashes: valid (NULL) or
 * why not. Allocates nothing. */
static const char *subs__check_path(const char *s)
{
    size_t lead = strspn(s, "/"), n = strlen(s + lead);
    while (n > 0 && s[lead + n - 1] == '/')
        n--;
    return stream_parse_path(s + lead, n);
}

/* The string member key trimmed of slashes, as a heap copy; NULL when missing or empty (trimmed
 * too when empty_is_null). */
static char *subs__opt_path(json_t *cfg, const char *key, int empty_is_null)
{
    char *p = subs__opt_string(cfg, key);
    if (p && *subs_path_trim(p) == '\0' && empty_is_null) {
        free(p);
        p = NULL;
    }
    return p;
}

/* Checks a subscription's body, in the order clients see its refusals. NULL, or the reason.
 * Allocates nothing. */
static const char *subs__check_config(json_t *cfg)
{
    if (!json_is_object(cfg))
        return "the body must be a JSON object";
    const char *type = json_string_value(json_object_get(cfg, "type"));
    int webhook = type && !strcmp(type, "webhook"), pull = type && !strcmp(type, "pull-wake");
    if (!webhook && !pull)
        return "type must be \"webhook\" or \"pull-wake\"";
    json_t *streams = json_object_get(cfg, "streams"), *v;
    size_t i;
    if (streams && !json_is_array(streams))
        return "streams must be an array of stream paths";
    json_array_foreach (streams, i, v) {
        if (!json_is_string(v))
            return "streams must contain only strings";
        if (subs__check_path(json_string_value(v)) != NULL)
            return "streams contains an invalid stream path";
    }
    const char *pattern = json_string_value(json_object_get(cfg, "pattern"));
    if ((pattern == NULL || pattern[strspn(pattern, "/")] == '\0') && json_array_size(streams) == 0)
        return "at least one of pattern or streams is required";
    json_t *ttl = json_object_get(cfg, "lease_ttl_ms");
    double d = json_number_value(ttl);
    if (ttl &&
        (!json_is_number(ttl) || d != (double)(int64_t)d || d < SUBS_LEASE_MIN_MS || d > SUBS_LEASE_MAX_MS))
        return "lease_ttl_ms must be an integer from 1000 to 600000";
    const char *url = json_string_value(json_object_get(json_object_get(cfg, "webhook"), "url"));
    if (webhook && (url == NULL || *url == '\0'))
        return "webhook subscriptions require webhook.url";
    const char *wake = json_string_value(json_object_get(cfg, "wake_stream"));
    if (wake && *wake && subs__check_path(wake) != NULL)
        return "wake_stream is not a valid stream path";
    if (pull && (wake == NULL || *wake == '\0'))
        return "pull-wake subscriptions require wake_stream";
    return NULL;
}

const char *subs__parse_config(json_t *cfg, const char *id, struct subs_sub **out)
{
    const char *why = subs__check_config(cfg);
    *out = NULL;
    if (why)
        return why;
    struct subs_sub *sub = xcalloc(1, sizeof *sub);
    sub->id = xstrdup(id);
    sub->type =
        !strcmp(json_string_value(json_object_get(cfg, "type")), "webhook") ? SUBS_WEBHOOK : SUBS_PULL_WAKE;
    sub->pattern = subs__opt_path(cfg, "pattern", 1);
    json_t *streams = json_object_get(cfg, "streams"), *v;
    size_t i;
    sub->streams = xcalloc(json_array_size(streams) + 1, sizeof *sub->streams);
    json_array_foreach (streams, i, v)
        sub->streams[sub->nstreams++] = subs_path_trim(xstrdup(json_string_value(v)));
    json_t *ttl = json_object_get(cfg, "lease_ttl_ms");
    sub->lease_ttl_ms = ttl ? (int64_t)json_number_value(ttl) : SUBS_LEASE_DEFAULT_MS;
    if (sub->type == SUBS_WEBHOOK)
        sub->webhook_url = subs__opt_string(json_object_get(cfg, "webhook"), "url");
    sub->wake_stream = subs__opt_path(cfg, "wake_stream", 0);
    json_t *desc = json_object_get(cfg, "description");
    if (json_is_string(desc))
        sub->description = xstrdup(json_string_value(desc));
    subs__hash(sub);
    *out = sub;
    return NULL;
}
