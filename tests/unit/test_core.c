/* Unit tests for src/core: buffers, the intrusive list, the hash map, the options table and the error-code table. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "core/list.h"
#include "core/errcode.h"
#include "core/map.h"
#include "core/opt.h"
#include "tap.h"

static void test_buf(void)
{
    struct buf b = {0};
    buf_puts(&b, "hello");
    buf_printf(&b, " %d", 42);
    is_str(b.p, "hello 42", "buf_printf appends formatted text");
    buf_consume(&b, 6);
    is_str(b.p, "42", "buf_consume drops the front");
    buf_reset(&b);
    buf_json_string(&b, "a\"b\\c\n\x01", 7);
    is_str(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\"", "buf_json_string escapes quotes, backslashes and controls");
    buf_reset(&b);
    for (int i = 0; i < 10000; i++)
        buf_append(&b, "x", 1);
    is_int(b.len, 10000, "buf grows past many doublings");
    buf_reset(&b);
    static const char mixed[] = "ok \xc3\xa9 \xff \xe0\x80\x80 \xed\xa0\x80 \xf0\x9f\x98\x80 \xc3";
    buf_append_utf8(&b, mixed, sizeof mixed - 1);
    is_str(b.p,
           "ok \xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xf0\x9f\x98\x80 \xef\xbf\xbd",
           "buf_append_utf8 keeps valid UTF-8 and replaces stray, overlong, surrogate and cut bytes");
    buf_free(&b);
    buf_free(&b); /* freeing twice is safe: buf_free leaves an empty buffer */
    ok(b.p == NULL && b.len == 0, "buf_free leaves an empty buffer");
    int digits_ok = 1;
    for (int c = -128; c < 256; c++) {
        const char *hex = "0123456789abcdef", *at = c > 0 ? strchr(hex, tolower(c)) : NULL;
        digits_ok = digits_ok && hex_digit(c) == (at ? (int)(at - hex) : -1);
    }
    ok(digits_ok, "hex_digit: 0-9, a-f and A-F are their values, every other byte (signed or not) -1");
}

static void count_cb(const char *key, void *value, void *arg) { (*(int *)arg)++; }

static void test_map(void)
{
    struct map m = {0};
    int values[1000];
    char key[32];
    for (int i = 0; i < 1000; i++) {
        values[i] = i;
        snprintf(key, sizeof key, "stream/%d", i);
        map_put(&m, key, strlen(key), &values[i]);
    }
    is_int(m.count, 1000, "map holds 1000 keys");
    ok(map_get(&m, "stream/517", 10) == &values[517], "map_get finds a key after growth");
    ok(map_get(&m, "stream/5170", 11) == NULL, "map_get misses an absent key");
    ok(map_put(&m, "stream/1", 8, &values[2]) == &values[1], "map_put returns the replaced value");
    ok(map_del(&m, "stream/1", 8) == &values[2], "map_del returns the removed value");
    ok(map_get(&m, "stream/1", 8) == NULL, "a deleted key is gone");
    int n = 0;
    map_each(&m, count_cb, &n);
    is_int(n, 999, "map_each visits every entry");
    map_clear(&m);
    ok(map_get(&m, "stream/2", 8) == NULL, "map_clear empties the map");
}

struct opts {
    char *listen;
    long long timeout;
    int verbose;
    char *mode;
};
#define O(f) offsetof(struct opts, f)
static const struct opt_def defs[] = {
    {"listen", OPT_STRING, "127.0.0.1:4437", 0, 0, NULL, "address", O(listen)},
    {"timeout", OPT_INT, "100", 1, 1000, NULL, "ms", O(timeout)},
    {"verbose", OPT_BOOL, "false", 0, 0, NULL, "talk", O(verbose)},
    {"mode", OPT_ENUM, "fsync", 0, 0, "fsync|os", "durability", O(mode)},
};

static void test_opt(void)
{
    struct opts o = {0};
    char err[256];
    int npos;
    char *argv1[] = {"x", "pos1", "--timeout", "250", "--verbose", "--mode=os", "pos2", NULL};
    unsetenv("AGENTD_LISTEN");
    int rc = opt_parse(defs, 4, &o, 7, argv1, &npos, "usage", err, sizeof err);
    is_int(rc, 0, "valid flags parse");
    is_int(o.timeout, 250, "--timeout N sets an integer");
    is_int(o.verbose, 1, "a bare boolean flag sets true");
    is_str(o.mode, "os", "--name=value sets an enum");
    is_str(o.listen, "127.0.0.1:4437", "unset options keep their default");
    is_int(npos, 2, "positional arguments are kept");
    is_str(argv1[1], "pos1", "positionals move to the front in order");
    is_str(argv1[2], "pos2", "positionals move to the front in order (2)");
    opt_free(defs, 4, &o);

    setenv("AGENTD_LISTEN", "0.0.0.0:1", 1);
    char *argv2[] = {"x", NULL};
    rc = opt_parse(defs, 4, &o, 1, argv2, &npos, "usage", err, sizeof err);
    is_str(o.listen, "0.0.0.0:1", "the environment overrides the default");
    opt_free(defs, 4, &o);
    char *argv3[] = {"x", "--listen", "1.2.3.4:5", NULL};
    rc = opt_parse(defs, 4, &o, 3, argv3, &npos, "usage", err, sizeof err);
    is_str(o.listen, "1.2.3.4:5", "a flag overrides the environment");
    opt_free(defs, 4, &o);
    unsetenv("AGENTD_LISTEN");

    char *argv4[] = {"x", "--timeout", "5000", NULL};
    rc = opt_parse(defs, 4, &o, 3, argv4, &npos, "usage", err, sizeof err);
    ok(rc == -EINVAL && strstr(err, "timeout"), "an out-of-range integer is refused with its name");
    opt_free(defs, 4, &o);
    char *argv5[] = {"x", "--mode", "sometimes", NULL};
    rc = opt_parse(defs, 4, &o, 3, argv5, &npos, "usage", err, sizeof err);
    ok(rc == -EINVAL && strstr(err, "fsync|os"), "a bad enum value names the choices");
    opt_free(defs, 4, &o);
    char *argv6[] = {"x", "--nope", NULL};
    rc = opt_parse(defs, 4, &o, 2, argv6, &npos, "usage", err, sizeof err);
    ok(rc == -EINVAL && strstr(err, "--nope"), "an unknown flag is refused");
    opt_free(defs, 4, &o);

    char path[] = "/tmp/agentd-opt-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("# comment\ntimeout = 77\nmode os\n", f);
    fclose(f);
    char cfgarg[64];
    snprintf(cfgarg, sizeof cfgarg, "--config=%s", path);
    char *argv7[] = {"x", cfgarg, "--mode", "fsync", NULL};
    rc = opt_parse(defs, 4, &o, 4, argv7, &npos, "usage", err, sizeof err);
    is_int(o.timeout, 77, "a config file sets options");
    is_str(o.mode, "fsync", "flags override the config file");
    opt_free(defs, 4, &o);
    unlink(path);
}

/*
 * README.md lists the error codes as a table; the source's table (core/errcode.h) is the one the
 * server answers with. They must be the same rows in the same order, so neither can drift. The
 * test runs from the repository's top directory (make unit).
 */
static void test_errcode_readme(void)
{
    FILE *f = fopen("README.md", "r");
    if (!ok(f != NULL, "README.md opens (run from the repository's top directory)"))
        return;
    char line[1024];
    int in_table = 0, row = 0, mismatches = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!in_table) {
            in_table = strcmp(line, "| Code | Status | Meaning |") == 0;
            continue;
        }
        if (strncmp(line, "|---", 4) == 0)
            continue;
        if (line[0] != '|')
            break;
        char want[1024];
        if (row < ERRCODE_COUNT) {
            snprintf(want, sizeof want, "| `%s` | %d | %s |", errcode_name((enum errcode)row),
                     errcode_status((enum errcode)row), errcode_meaning((enum errcode)row));
            if (strcmp(line, want) != 0 && mismatches++ == 0)
                printf("#   README row %d: %s\n#   the source says: %s\n", row + 1, line, want);
        }
        row++;
    }
    fclose(f);
    ok(in_table, "README.md has the error-code table");
    is_int(row, ERRCODE_COUNT, "README lists as many error codes as src/core/errcode.h");
    is_int(mismatches, 0, "every README row equals the source's row (code, status, meaning)");

    int dup = 0, bad_status = 0;
    for (int i = 0; i < ERRCODE_COUNT; i++) {
        int st = errcode_status((enum errcode)i);
        bad_status += st < 400 || st > 599;
        for (int j = 0; j < i; j++)
            dup += strcmp(errcode_name((enum errcode)i), errcode_name((enum errcode)j)) == 0;
    }
    is_int(dup, 0, "no code is spelled twice");
    is_int(bad_status, 0, "every code answers with a 4xx or 5xx status");
    is_str(errcode_name(ERR_NOT_FOUND), "not_found", "ERR_NOT_FOUND is not_found");
    is_int(errcode_status(ERR_STORAGE_FULL), 507, "storage_full is 507");
}

struct item {
    int id;
    LIST_LINK(item) link;
};

/* The ids on the list, first to last, as a string ("3 2 1"). */
static const char *list_ids(struct item *head)
{
    static char out[64];
    size_t n = 0;
    out[0] = '\0';
    for (struct item *it = head; it && n + 8 < sizeof out; it = it->link.next)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%d", n ? " " : "", it->id);
    return out;
}

static void test_list(void)
{
    struct item a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4};
    struct item *head = NULL;
    ok(!list_linked(&a, link), "list: a zeroed element is on no list");
    list_remove(&a, link);
    ok(head == NULL, "list: removing an element that is on no list does nothing");
    list_insert(&head, &a, link);
    list_insert(&head, &b, link);
    list_insert(&head, &c, link);
    is_str(list_ids(head), "3 2 1", "list: new elements go first");
    list_remove(&b, link);
    is_str(list_ids(head), "3 1", "list: an element in the middle leaves");
    ok(!list_linked(&b, link), "list: and is on no list after");
    list_remove(&b, link);
    is_str(list_ids(head), "3 1", "list: removing it again does nothing");
    list_remove(&c, link);
    is_str(list_ids(head), "1", "list: the first element leaves (the head moves on)");
    list_insert(&head, &d, link);
    list_remove(&a, link);
    is_str(list_ids(head), "4", "list: the last element leaves");
    list_insert(&head, &a, link);
    list_insert(&head, &b, link);
    for (struct item *it = head, *next; it; it = next) {
        next = it->link.next;
        if (it->id != 4)
            list_remove(it, link);
    }
    is_str(list_ids(head), "4", "list: elements leave while a loop that read its next one walks it");
    list_remove(&d, link);
    ok(head == NULL, "list: empty once its last element left");
}

int main(void)
{
    test_buf();
    test_list();
    test_map();
    test_opt();
    test_errcode_readme();
    return done_testing();
}
