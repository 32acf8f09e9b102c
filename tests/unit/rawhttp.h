/*
 * rawhttp.h — a blocking HTTP/1.1 client for unit tests that start a real server: raw request bytes
 * in, status, headers and (de-chunked) body out. Header-only, like tap.h: each test binary is one
 * translation unit.
 */
#ifndef AGENTD_RAWHTTP_H
#define AGENTD_RAWHTTP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"

struct rawhttp_response {
    int status;
    char *head; /* status line and headers */
    char *body; /* de-chunked */
};

static void rawhttp_free(struct rawhttp_response *r)
{
    free(r->head);
    free(r->body);
}

/* The value of header name in r (a static copy), or NULL. */
static const char *rawhttp_header(const struct rawhttp_response *r, const char *name)
{
    static char value[2048];
    size_t n = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *p = line + 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, "\r");
            snprintf(value, sizeof value, "%.*s", (int)len, p);
            return value;
        }
    }
    return NULL;
}

/* Sends raw bytes to 127.0.0.1:port on a fresh connection and reads the response until the server
 * closes (send Connection: close). A failed connection gives status 0 and empty strings. */
static struct rawhttp_response rawhttp_exchange(int port, const char *raw, size_t len)
{
    struct rawhttp_response r = {0};
    struct buf in = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        for (size_t off = 0; off < len;) {
            ssize_t n = send(fd, raw + off, len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        char chunk[4096];
        ssize_t n;
        while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0)
            buf_append(&in, chunk, (size_t)n);
    }
    close(fd);
    const char *end = in.p ? strstr(in.p, "\r\n\r\n") : NULL;
    if (end == NULL) {
        buf_free(&in);
        r.head = xstrdup("");
        r.body = xstrdup("");
        return r;
    }
    r.head = xstrndup(in.p, (size_t)(end - in.p) + 2);
    r.status = atoi(in.p + 9);
    const char *body = end + 4;
    size_t blen = in.len - (size_t)(body - in.p);
    const char *te = rawhttp_header(&r, "Transfer-Encoding");
    if (te && strcasecmp(te, "chunked") == 0) {
        struct buf out = {0};
        const char *p = body, *stop = body + blen;
        while (p < stop) {
            char *after;
            unsigned long size = strtoul(p, &after, 16);
            const char *data = strstr(after, "\r\n");
            if (size == 0 || data == NULL || data + 2 + size > stop)
                break;
            buf_append(&out, data + 2, size);
            p = data + 2 + size + 2;
        }
        r.body = xstrdup(out.p ? out.p : "");
        buf_free(&out);
    } else {
        r.body = xstrndup(body, blen);
    }
    buf_free(&in);
    return r;
}

#endif
