/*
 * core — the small things every module needs: aborting allocators, a growable byte buffer, a clock,
 * and leveled logging. Depends on libc only.
 *
 * Invariants: allocation failure aborts with a message (no untested recovery paths); a struct buf
 * with memory (p != NULL, whatever call gave it) always holds a NUL after its last byte, so its
 * bytes can be used as a C string when they are text; a zero-initialised one has p == NULL.
 */
#ifndef AGENTD_CORE_H
#define AGENTD_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_UNUSED_RESULT __attribute__((warn_unused_result))
#define CORE_PRINTF(a, b)  __attribute__((format(printf, a, b)))
#define CORE_ARRAY_LEN(a)  (sizeof(a) / sizeof((a)[0]))

/* Allocators that never return NULL: failure prints and aborts. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) CORE_PRINTF(1, 2);

/* A growable byte buffer. Zero-initialised is empty and valid; free with buf_free. */
struct buf {
    char *p;
    size_t len;
    size_t cap;
};
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) CORE_PRINTF(2, 3);
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
void buf_json_string(struct buf *b, const char *s, size_t n);
/* Appends s[0..n) as valid UTF-8: every byte that does not start a well-formed sequence (overlong,
 * surrogate, out of range, truncated) becomes U+FFFD. For text that must become a JSON string. */
void buf_append_utf8(struct buf *b, const char *s, size_t n);
/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF) that starts s, n > 0 bytes long; 0 when it is not one or is cut short. */
size_t utf8_seq_len(const void *s, size_t n);
/* The value of the hexadecimal digit c (either case), or -1 when c is not one (percent-escapes). */
int hex_digit(int c);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* Monotonic microseconds (for durations) and wall-clock milliseconds since the epoch. */
uint64_t clock_mono_us(void);
int64_t clock_wall_ms(void);

/* Leveled logging to stderr. The macros test the level before evaluating their arguments. */
enum log_level {
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR
};
extern enum log_level log_threshold;
void log_write(enum log_level level, const char *fmt, ...) CORE_PRINTF(2, 3);
#define log_at(level, ...)                   \
    do {                                     \
        if ((level) >= log_threshold)        \
            log_write((level), __VA_ARGS__); \
    } while (0)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
/* Parses "debug|info|warn|error"; returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out) CORE_UNUSED_RESULT;

#endif
