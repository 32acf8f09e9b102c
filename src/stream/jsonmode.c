/* jsonmode — a strict RFC 8259 validator that reports top-level array element spans. */
#include "stream/jsonmode.h"

#include "core/core.h"

#include <stdint.h>
#include <string.h>

struct jsonmode__p {
    const char *s;
    size_t n, i;
    const char *err;
};

static void jsonmode__ws(struct jsonmode__p *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jsonmode__fail(struct jsonmode__p *p, const char *why)
{
    if (p->err == NULL)
        p->err = why;
    return -1;
}

static int jsonmode__lit(struct jsonmode__p *p, const char *lit)
{
    size_t l = strlen(lit);
    if (p->n - p->i < l || memcmp(p->s + p->i, lit, l) != 0)
        return jsonmode__fail(p, "invalid JSON literal");
    p->i += l;
    return 0;
}

static int jsonmode__hex4(struct jsonmode__p *p, unsigned *out)
{
    if (p->n - p->i < 4)
        return jsonmode__fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return jsonmode__fail(p, "invalid \\u escape");
    }
    *out = v;
    return 0;
}

/* Validates one UTF-8 sequence starting at p->i (first byte >= 0x80). */
static int jsonmode__utf8(struct jsonmode__p *p)
{
    size_t len = utf8_seq_len(p->s + p->i, p->n - p->i);
    if (len == 0)
        return jsonmode__fail(p, "invalid UTF-8");
    p->i += len;
    return 0;
}

static int jsonmode__string(struct jsonmode__p *p)
{
    p->i++; /* opening quote */
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            return 0;
        }
        if (c < 0x20)
            return jsonmode__fail(p, "control character in string");
        if (c == '\\') {
            if (++p->i >= p->n)
                break;
            char e = p->s[p->i++];
            if (e == 'u') {
                unsigned v;
                if (jsonmode__hex4(p, &v))
                    return -1;
                /* Lone surrogates are accepted, as JavaScript's JSON.parse accepts them. */
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return jsonmode__fail(p, "invalid escape in string");
            }
        } else if (c >= 0x80) {
            if (jsonmode__utf8(p))
                return -1;
        } else {
            p->i++;
        }
    }
    return jsonmode__fail(p, "unterminated string");
}

static int jsonmode__digits(struct jsonmode__p *p)
{
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > start ? 0 : jsonmode__fail(p, "invalid number");
}

static int jsonmode__number(struct jsonmode__p *p)
{
    if (p->s[p->i] == '-')
        p->i++;
    if (p->i < p->n && p->s[p->i] == '0')
        p->i++;
    else if (jsonmode__digits(p))
        return -1;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (jsonmode__digits(p))
            return -1;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (jsonmode__digits(p))
            return -1;
    }
    return 0;
}

static int jsonmode__value(struct jsonmode__p *p, int depth, jsonmode_msg_cb cb, void *arg, size_t *count);

/* Parses an array or object. With count set (the flattened top-level array), counts each element
 * and reports it to cb. */
static int jsonmode__container(struct jsonmode__p *p, int depth, jsonmode_msg_cb cb, void *arg, size_t *count)
{
    char close = p->s[p->i] == '[' ? ']' : '}';
    if (depth >= JSONMODE_MAX_DEPTH)
        return jsonmode__fail(p, "JSON nested too deeply");
    p->i++;
    jsonmode__ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        return 0;
    }
    for (;;) {
        jsonmode__ws(p);
        if (close == '}') {
            if (p->i >= p->n || p->s[p->i] != '"')
                return jsonmode__fail(p, "expected object key");
            if (jsonmode__string(p))
                return -1;
            jsonmode__ws(p);
            if (p->i >= p->n || p->s[p->i] != ':')
                return jsonmode__fail(p, "expected ':'");
            p->i++;
            jsonmode__ws(p);
        }
        size_t start = p->i;
        if (jsonmode__value(p, depth + 1, NULL, NULL, NULL))
            return -1;
        if (count) {
            if (cb)
                cb(p->s + start, p->i - start, arg);
            (*count)++;
        }
        jsonmode__ws(p);
        if (p->i >= p->n)
            return jsonmode__fail(p, "unexpected end of JSON");
        if (p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] == close) {
            p->i++;
            return 0;
        }
        return jsonmode__fail(p, "expected ',' or closing bracket");
    }
}

static int jsonmode__value(struct jsonmode__p *p, int depth, jsonmode_msg_cb cb, void *arg, size_t *count)
{
    jsonmode__ws(p);
    if (p->i >= p->n)
        return jsonmode__fail(p, "expected a JSON value");
    switch (p->s[p->i]) {
    case '{': return jsonmode__container(p, depth, NULL, NULL, NULL);
    case '[': return jsonmode__container(p, depth, cb, arg, count);
    case '"': return jsonmode__string(p);
    case 't': return jsonmode__lit(p, "true");
    case 'f': return jsonmode__lit(p, "false");
    case 'n': return jsonmode__lit(p, "null");
    default:
        if (p->s[p->i] == '-' || (p->s[p->i] >= '0' && p->s[p->i] <= '9'))
            return jsonmode__number(p);
        return jsonmode__fail(p, "invalid JSON value");
    }
}

const char *jsonmode_split(const char *body, size_t n, int flatten, jsonmode_msg_cb cb, void *arg,
                           size_t *count)
{
    struct jsonmode__p p = {.s = body, .n = n};
    size_t dummy = 0;
    if (count == NULL)
        count = &dummy;
    *count = 0;
    jsonmode__ws(&p);
    size_t start = p.i;
    int is_array = p.i < p.n && p.s[p.i] == '[';
    int report_elems = flatten && is_array;
    if (jsonmode__value(&p, 0, cb, arg, report_elems ? count : NULL))
        return p.err;
    size_t end = p.i;
    jsonmode__ws(&p);
    if (p.i != p.n)
        return "trailing characters after JSON value";
    if (!report_elems) {
        if (cb)
            cb(body + start, end - start, arg);
        *count = 1;
    }
    return NULL;
}

size_t jsonmode_stored_split(const char *p, size_t n, jsonmode_msg_cb cb, void *arg)
{
    size_t count = 0, start = 0;
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped character cannot end the string */
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c == ',' && depth == 0) {
            if (cb)
                cb(p + start, i - start, arg);
            count++;
            start = i + 1;
        }
    }
    return count;
}
