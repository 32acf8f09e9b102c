/*
 * tap.h — the few TAP helpers unit tests share (prove reads the output). Header-only: each test
 * binary is one translation unit.
 */
#ifndef AGENTD_TAP_H
#define AGENTD_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count, tap_failed;

__attribute__((format(printf, 2, 3))) static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++tap_count);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!cond)
        tap_failed++;
    return cond;
}

#define is_int(got, want, ...)                                   \
    do {                                                         \
        long long g_ = (long long)(got), w_ = (long long)(want); \
        if (!ok(g_ == w_, __VA_ARGS__))                          \
            printf("#   got %lld, want %lld\n", g_, w_);         \
    } while (0)

#define is_str(got, want, ...)                                                           \
    do {                                                                                 \
        const char *g_ = (got), *w_ = (want);                                            \
        if (!ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__))                           \
            printf("#   got '%s', want '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
    } while (0)

/* A diagnostic line ("# ..."): prove shows it with a failure, or always under -v. */
__attribute__((format(printf, 1, 2))) static inline void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* Stops the test binary when what follows cannot run: prove reports the file as failed, with the
 * reason. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void bail_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("Bail out! ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

/* Prints the plan and returns the exit status. */
static inline int done_testing(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
