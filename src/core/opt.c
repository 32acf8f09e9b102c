/* opt — the options table. See opt.h. */
#include "core/opt.h"
#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct opt_def *opt__find(const struct opt_def *defs, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(defs[i].name) == len && memcmp(defs[i].name, name, len) == 0)
            return &defs[i];
    return NULL;
}

static int opt__choice_ok(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && memcmp(p, v, l) == 0)
            return 1;
        if (bar == NULL)
            break;
        p = bar + 1;
    }
    return 0;
}

/* Stores one value; `origin` says where it came from, for the error message. */
static int opt__set(const struct opt_def *d, void *target, const char *v, const char *origin, char *err,
                    size_t errlen)
{
    char *field = (char *)target + d->offset;
    switch (d->type) {
    case OPT_STRING:
    case OPT_ENUM:
        if (d->type == OPT_ENUM && !opt__choice_ok(d->choices, v)) {
            snprintf(err, errlen, "%s: --%s must be one of %s, not '%s'", origin, d->name, d->choices, v);
            return -EINVAL;
        }
        free(*(char **)field);
        *(char **)field = xstrdup(v);
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < d->min || x > d->max) {
            snprintf(err, errlen, "%s: --%s must be an integer in [%lld, %lld], not '%s'", origin, d->name,
                     d->min, d->max, v);
            return -EINVAL;
        }
        *(long long *)field = x;
        return 0;
    }
    case OPT_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(int *)field = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(int *)field = 0;
        else {
            snprintf(err, errlen, "%s: --%s must be true or false, not '%s'", origin, d->name, v);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

static int opt__config_file(const struct opt_def *defs, size_t n, void *target, const char *path, char *err,
                            size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return -EINVAL;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '#' || *p == '\0')
            continue;
        char *name = p;
        while (*p && !isspace((unsigned char)*p) && *p != '=')
            p++;
        size_t nl = (size_t)(p - name);
        while (isspace((unsigned char)*p) || *p == '=')
            p++;
        char *v = p;
        size_t vl = strlen(v);
        while (vl && isspace((unsigned char)v[vl - 1]))
            v[--vl] = '\0';
        const struct opt_def *d = opt__find(defs, n, name, nl);
        char origin[300];
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        if (d == NULL) {
            snprintf(err, errlen, "%s: unknown option '%.*s'", origin, (int)nl, name);
            rc = -EINVAL;
        } else {
            rc = opt__set(d, target, v, origin, err, errlen);
        }
    }
    fclose(f);
    return rc;
}

int opt_parse(const struct opt_def *defs, size_t n, void *target, int argc, char **argv, int *npos,
              const char *usage, char *err, size_t errlen)
{
    int rc;
    *npos = 0;
    for (size_t i = 0; i < n; i++)
        if (defs[i].defval && (rc = opt__set(&defs[i], target, defs[i].defval, "default", err, errlen)))
            return rc;

    /* The config file is named on the command line but sits below env and flags in precedence. */
    for (int i = 1; i < argc; i++) {
        const char *cfg = NULL;
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cfg = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            cfg = argv[i] + 9;
        if (cfg && (rc = opt__config_file(defs, n, target, cfg, err, errlen)))
            return rc;
    }

    for (size_t i = 0; i < n; i++) {
        char env[128] = "AGENTD_";
        size_t k = 7;
        for (const char *p = defs[i].name; *p && k < sizeof env - 1; p++)
            env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v && (rc = opt__set(&defs[i], target, v, env, err, errlen)))
            return rc;
    }

    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            opt_help(stdout, usage, defs, n);
            return 1;
        }
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++)
                argv[1 + (*npos)++] = argv[i];
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            argv[1 + (*npos)++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        if (nl == 6 && !strncmp(name, "config", 6)) {
            if (!eq)
                i++;
            continue;
        }
        const struct opt_def *d = opt__find(defs, n, name, nl);
        if (d == NULL) {
            snprintf(err, errlen, "unknown option --%.*s (see --help)", (int)nl, name);
            return -EINVAL;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (d->type == OPT_BOOL)
            v = "true";
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            snprintf(err, errlen, "option --%s needs a value", d->name);
            return -EINVAL;
        }
        if ((rc = opt__set(d, target, v, "command line", err, errlen)))
            return rc;
    }
    return 0;
}

void opt_help(FILE *out, const char *usage, const struct opt_def *defs, size_t n)
{
    fprintf(
        out,
        "%s\n\nOptions (also AGENTD_<NAME> in the environment, or `name value` lines in --config FILE):\n",
        usage);
    for (size_t i = 0; i < n; i++) {
        const struct opt_def *d = &defs[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s", d->name,
                 d->type == OPT_BOOL  ? ""
                 : d->type == OPT_INT ? " N"
                                      : " VALUE");
        fprintf(out, "  %-26s %s", left, d->help);
        if (d->type == OPT_ENUM)
            fprintf(out, " (%s)", d->choices);
        if (d->defval)
            fprintf(out, " [default: %s]", d->defval);
        fputc('\n', out);
    }
}

void opt_free(const struct opt_def *defs, size_t n, void *target)
{
    for (size_t i = 0; i < n; i++) {
        if (defs[i].type == OPT_STRING || defs[i].type == OPT_ENUM) {
            char **field = (char **)((char *)target + defs[i].offset);
            free(*field);
            *field = NULL;
        }
    }
}
