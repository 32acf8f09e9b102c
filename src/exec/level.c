/* level — a guess at the log level of one stderr line, so an agent's stderr can become `log`
 * events that a reader can filter. A guess, not a parser: it looks at the first few words only,
 * and anything it does not recognise is "info" (stderr is where many programs print progress).
 */
#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "exec/exec.h"

#define LEVEL_WORDS 4   /* words looked at */
#define LEVEL_SCAN  160 /* bytes looked at */

struct keyword {
    const char *word;
    const char *level;
};

/* Whole words (case-insensitive) after the punctuation around them is stripped. */
static const struct keyword keywords[] = {
    {"error", "error"},     {"err", "error"},       {"err!", "error"},       {"fatal", "error"},
    {"panic", "error"},     {"panicked", "error"},  {"critical", "error"},   {"crit", "error"},
    {"emerg", "error"},     {"alert", "error"},     {"failed", "error"},     {"failure", "error"},
    {"exception", "error"}, {"traceback", "error"}, {"e", "error"},          {"warn", "warn"},
    {"warning", "warn"},    {"deprecated", "warn"}, {"deprecation", "warn"}, {"w", "warn"},
    {"info", "info"},       {"notice", "info"},     {"note", "info"},        {"i", "info"},
    {"debug", "debug"},     {"dbg", "debug"},       {"trace", "debug"},      {"verbose", "debug"},
    {"d", "debug"},         {"t", "debug"},
};

/* Single letters only count inside brackets ("[E]") or as glog's "E0102": "a" or "I think" must
 * not read as a level. */
static const char *lookup(const char *w, size_t n, int bracketed)
{
    if (n == 0 || (n == 1 && !bracketed))
        return NULL;
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strlen(keywords[i].word) == n && strncasecmp(w, keywords[i].word, n) == 0)
            return keywords[i].level;
    return NULL;
}

/* glog / klog: a level letter followed by four digits (month and day), e.g. "W1121 12:00:00". */
static const char *glog(const char *w, size_t n)
{
    if (n != 5 || !isdigit((unsigned char)w[1]) || !isdigit((unsigned char)w[2]) ||
        !isdigit((unsigned char)w[3]) || !isdigit((unsigned char)w[4]))
        return NULL;
    switch (w[0]) {
    case 'E':
    case 'F': return "error";
    case 'W': return "warn";
    case 'I': return "info";
    }
    return NULL;
}

/* "level=warn", "lvl=debug", "\"level\":\"error\"", "severity: error" anywhere in the scan. */
static const char *keyed(const char *line, size_t len)
{
    static const char *const keys[] = {"level", "lvl", "severity"};

    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            size_t kl = strlen(keys[k]);
            size_t j = i + kl, start;
            if (j > len || strncasecmp(line + i, keys[k], kl) != 0)
                continue;
            if (i > 0 && isalnum((unsigned char)line[i - 1]))
                continue;
            while (j < len && (line[j] == '"' || line[j] == ' '))
                j++;
            if (j >= len || (line[j] != '=' && line[j] != ':'))
                continue;
            j++;
            while (j < len && (line[j] == '"' || line[j] == ' '))
                j++;
            start = j;
            while (j < len && isalpha((unsigned char)line[j]))
                j++;
            const char *lv = lookup(line + start, j - start, 0);
            if (lv != NULL)
                return lv;
        }
    }
    return NULL;
}

const char *exec_log_level(const char *line, size_t len)
{
    const char *p = line, *end, *lv;
    int words = 0;

    if (len > LEVEL_SCAN)
        len = LEVEL_SCAN;
    end = line + len;
    if ((lv = keyed(line, len)) != NULL)
        return lv;
    while (p < end && words < LEVEL_WORDS) {
        const char *w;
        int bracketed = 0;
        size_t n;

        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p == end)
            break;
        w = p;
        while (p < end && !isspace((unsigned char)*p))
            p++;
        n = (size_t)(p - w);
        words++;
        if ((lv = glog(w, n)) != NULL)
            return lv;
        /* Strip the punctuation around a word: "[ERROR]", "(warn)", "Error:", "<debug>". */
        while (n > 0 && strchr("[(<{\"'", *w) != NULL) {
            bracketed = 1;
            w++;
            n--;
        }
        while (n > 0 && strchr("])>}\"':,;.-", w[n - 1]) != NULL)
            n--;
        if ((lv = lookup(w, n, bracketed)) != NULL)
            return lv;
        /* "npm ERR!": the bang is part of the word. */
        if (n > 1 && w[n - 1] == '!' && (lv = lookup(w, n - 1, bracketed)) != NULL)
            return lv;
    }
    return "info";
}
