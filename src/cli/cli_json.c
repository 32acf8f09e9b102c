/*
 * cli_json.c — the JSON helpers of the client commands (declared in cli_json.h): walking the
 * elements of a JSON-mode stream read without re-serialising them, printing an answer readably,
 * and reading a string member.
 */
#include "cli/cli_json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- Elements of a JSON array ---------------------------------------------------------------- */

static int cli__is_json_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int cli_json_array_each(const char *text, size_t len, cli_json_element_cb cb, void *arg)
{
    const char *p = text, *end = text + len;
    while (p < end && cli__is_json_space(*p))
        p++;
    while (end > p && cli__is_json_space(end[-1]))
        end--;
    if (end - p < 2 || *p != '[' || end[-1] != ']')
        return -EINVAL;
    p++;
    end--; /* now [p, end) is the array's inside */

    int depth = 0, in_string = 0, escaped = 0;
    const char *start = p;
    for (const char *q = p; q <= end; q++) {
        if (q == end && (in_string || depth != 0))
            return -EINVAL;
        if (q < end && in_string) {
            if (escaped)
                escaped = 0;
            else if (*q == '\\')
                escaped = 1;
            else if (*q == '"')
                in_string = 0;
        } else if (q < end && *q == '"') {
            in_string = 1;
        } else if (q < end && (*q == '[' || *q == '{')) {
            depth++;
        } else if (q < end && (*q == ']' || *q == '}')) {
            if (--depth < 0)
                return -EINVAL;
        } else if (q == end || (*q == ',' && depth == 0)) {
            const char *a = start, *b = q;
            while (a < b && cli__is_json_space(*a))
                a++;
            while (b > a && cli__is_json_space(b[-1]))
                b--;
            if (a == b) /* an empty element is an error, except in "[]" (or "[ ]") itself */
                return q == end && start == p ? 0 : -EINVAL;
            int rc = cb(arg, a, (size_t)(b - a));
            if (rc != 0)
                return rc;
            start = q + 1;
        }
    }
    return 0;
}

/* ---- Readable JSON --------------------------------------------------------------------------- */

static int cli__json_is_scalar(const json_t *v) { return !json_is_object(v) && !json_is_array(v); }

/* A scalar as text: strings bare, everything else as JSON. */
static void cli__json_scalar(FILE *out, const json_t *v)
{
    if (json_is_string(v)) {
        fwrite(json_string_value(v), 1, json_string_length(v), out);
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    fputs(text != NULL ? text : "?", out);
    free(text);
}

/* {"type":...,"repr":...} is how runtimes describe a value; it reads best on one line. */
static int cli__json_is_typed_value(const json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 2 && json_object_get(v, "type") != NULL &&
           json_object_get(v, "repr") != NULL;
}

static void cli__json_print_value(FILE *out, const json_t *v, int indent);

static void cli__json_print_object(FILE *out, const json_t *object, int indent)
{
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)object, key, v) {
        fprintf(out, "%*s%s:", indent, "", key);
        cli__json_print_value(out, v, indent);
    }
}

/* Prints what follows "key:" — on the same line for scalars, below it (indented) otherwise. */
static void cli__json_print_value(FILE *out, const json_t *v, int indent)
{
    if (cli__json_is_typed_value(v)) {
        fputc(' ', out);
        cli__json_scalar(out, json_object_get(v, "type"));
        fputs("  ", out);
        cli__json_scalar(out, json_object_get(v, "repr"));
        fputc('\n', out);
    } else if (json_is_object(v)) {
        fputs(json_object_size(v) == 0 ? " {}\n" : "\n", out);
        cli__json_print_object(out, v, indent + 2);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        int all_scalars = 1;
        json_array_foreach (v, i, item)
            all_scalars = all_scalars && cli__json_is_scalar(item);
        if (!all_scalars) {
            char *text = json_dumps(v, JSON_COMPACT);
            fprintf(out, " %s\n", text != NULL ? text : "?");
            free(text);
            return;
        }
        json_array_foreach (v, i, item) {
            fputs(i == 0 ? " " : ", ", out);
            cli__json_scalar(out, item);
        }
        fputc('\n', out);
    } else {
        fputc(' ', out);
        cli__json_scalar(out, v);
        fputc('\n', out);
    }
}

int cli_json_print(FILE *out, const char *text, size_t len)
{
    if (len == 0)
        return -EINVAL;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    cli__json_print_object(out, root, 0);
    json_decref(root);
    return 0;
}

const char *cli_json_str(const json_t *object, const char *key, const char *otherwise)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value != NULL ? value : otherwise;
}

void cli_json_print_each(FILE *out, const json_t *array, int json, cli_json_row_cb row)
{
    size_t i;
    json_t *element;
    json_array_foreach (array, i, element) {
        if (!json) {
            row(out, element);
            continue;
        }
        char *line = json_dumps(element, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(out, "%s\n", line ? line : "null");
        free(line);
    }
}
