/*
 * cli_json — the JSON helpers of the client commands (cli_json.c). Pure but for the printer's
 * output; nothing here is kept between calls.
 */
#ifndef AGENTD_CLI_JSON_H
#define AGENTD_CLI_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Calls cb(arg, p, n) with the exact text of each element of the JSON array in text[0..len), in
 * order and without re-serialising it (so numbers keep their spelling). Surrounding whitespace is
 * trimmed. Returns 0, the callback's nonzero value, or -EINVAL when the text is not an array. Only
 * the array structure is checked; elements are trusted to be valid JSON. Pure. */
typedef int (*cli_json_element_cb)(void *arg, const char *p, size_t n);
int cli_json_array_each(const char *text, size_t len, cli_json_element_cb cb, void *arg);

/* Prints a JSON object readably: "key: value" lines, nested objects indented, arrays of scalars
 * on one line, {"type","repr"} pairs as "type  repr". Returns 0, or -EINVAL (printing nothing)
 * when text is not a JSON object. */
int cli_json_print(FILE *out, const char *text, size_t len);

/* Prints each element of array to out: with json as one compact JSON line each (what scripts
 * read), else through row (a table row; the caller prints the table's header). */
typedef void (*cli_json_row_cb)(FILE *out, const json_t *element);
void cli_json_print_each(FILE *out, const json_t *array, int json, cli_json_row_cb row);

/* The string member key of object, or otherwise when it is missing or not a string. Borrowed from
 * object. */
const char *cli_json_str(const json_t *object, const char *key, const char *otherwise);

#endif
