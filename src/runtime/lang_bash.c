/* lang_bash — a persistent `bash -i` driven through PROMPT_COMMAND.
 *
 * Why interactive: SIGINT in an interactive shell abandons the running command line and returns
 * to the prompt with every variable, function and the cwd intact — exactly "interrupt, keep the
 * state". Its prompts are emptied, and PROMPT_COMMAND, which runs before every prompt including
 * the one after an interrupt, prints the completion markers with the status of what just ran, to
 * fd 63 (so `exec 1>&-` or `exec >file` cannot hide them), flagged when fd 1 or 2 is closed.
 *
 * A request is one short line on stdin, `__agentd_p;__agentd_r` (bash reads a pipe a byte at a time, so
 * every byte of it is a system call): __agentd_p (a function) reads the memfd at fd 62 — the call's nonce,
 * a newline, then the code — into globals (agentd rewinds the offset it shares with us, so no
 * open/dup per call is needed); __agentd_r (an alias for `builtin eval "$__agentd_code" </dev/null`) runs
 * the code at top level
 * (not inside a function) so `declare`/`local` behave as typed at a prompt, and its stdin is
 * /dev/null so user code never reads the request stream. PROMPT_COMMAND clears the code and the
 * nonce after each call, so if an early SIGINT left half a line behind, the remainder evaluates
 * nothing and prints no marker (the caller then escalates to SIGKILL).
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "runtime/runtime_int.h"

/* Sourced once from the memfd before the first call. Variables present at its end form the
 * baseline that state() leaves out; ${!x@} lists names without forking a subshell. */
static const char runtime__bash_init[] = "PS1= PS2= PS0= PS4='+ '\n"
                                         "set +H +o history\n"
                                         "__agentd_n= __agentd_code=\n"
                                         "__agentd_p() {\n"
                                         "  IFS= builtin read -r -d '' -u 62 __agentd_code\n"
                                         "  __agentd_n=${__agentd_code:0:" RUNTIME__NONCE_LEN_STR
                                         "} __agentd_code=${__agentd_code:" RUNTIME__NONCE_LEN_STR "+1}\n"
                                         "  return 0\n"
                                         "}\n"
                                         "shopt -s expand_aliases\n"
                                         "alias __agentd_r='builtin eval \"$__agentd_code\" </dev/null'\n"
                                         "__agentd_prompt() {\n"
                                         "  local s=$? f=\n"
                                         "  if [[ -n $__agentd_n ]]; then\n"
                                         "    [[ -e /dev/fd/1 ]] || f=" RUNTIME__FLAG_STDOUT "\n"
                                         "    [[ -e /dev/fd/2 ]] || f+=" RUNTIME__FLAG_STDERR "\n"
                                         "    builtin printf '\\036%s:%d%s\\n' \"$__agentd_n\" \"$s\" \"$f\" "
                                         ">&" RUNTIME__MARK_FD_STR "\n"
                                         "  fi\n"
                                         "  __agentd_n= __agentd_code=\n"
                                         "}\n"
                                         "declare -r PROMPT_COMMAND=__agentd_prompt\n"
                                         "declare -A __agentd_base=()\n"
                                         "for __agentd_i in {a..z} {A..Z} _; do\n"
                                         "  builtin eval \"for __agentd_j in \\\"\\${!$__agentd_i@}\\\"; do "
                                         "__agentd_base[\\$__agentd_j]=1; done\"\n"
                                         "done\n"
                                         "unset __agentd_i __agentd_j\n";

/* Runs as an ordinary call. Output: NUL-separated records "c" cwd, "x" name value (exported),
 * "v" name value (other variables set since start), then "F" and `declare -F` lines. */
static const char runtime__bash_state[] =
    "builtin printf 'c\\0%s\\0' \"$PWD\"\n"
    "for __agentd_i in {a..z} {A..Z} _; do\n"
    "  builtin eval \"__agentd_l=(\\\"\\${!$__agentd_i@}\\\")\"\n"
    "  for __agentd_j in \"${__agentd_l[@]}\"; do\n"
    "    [[ $__agentd_j == __agentd_* ]] && continue\n"
    "    if [[ ${!__agentd_j@a} == *x* ]]; then\n"
    "      builtin printf 'x\\0%s\\0%s\\0' \"$__agentd_j\" \"${!__agentd_j}\"\n"
    "    elif [[ -z ${__agentd_base[$__agentd_j]} ]]; then\n"
    "      builtin printf 'v\\0%s\\0%s\\0' \"$__agentd_j\" \"${!__agentd_j}\"\n"
    "    fi\n"
    "  done\n"
    "done\n"
    "unset __agentd_i __agentd_j __agentd_l\n"
    "builtin printf 'F\\0'\n"
    "builtin declare -F\n";

static size_t runtime__bash_request(char *buf, size_t cap, enum runtime__kind kind, const char *nonce,
                                    size_t code_len)
{
    int n;

    if (kind == RUNTIME__INIT)
        n = snprintf(buf, cap, ". /dev/fd/%d; __agentd_n=%s\n", RUNTIME__CODE_FD, nonce);
    else
        n = snprintf(buf, cap, "__agentd_p;__agentd_r\n");
    assert(n > 0 && (size_t)n < cap); /* the whole line, or the call would hang */
    return (size_t)n;
}

static json_t *runtime__bash_text(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n);
    return s ? s : json_string("<not UTF-8>");
}

static int runtime__bash_state_json(const char *out, size_t len, void *obj_)
{
    json_t *obj = obj_, *exported = json_object(), *vars = json_object(), *funcs = json_array();
    const char *p = out, *end = out + len;

    /* Records until the "F" tag; each field is NUL-terminated. */
    while (p < end) {
        const char *tag = p, *f1, *f2 = NULL;
        size_t l1, l2 = 0;

        p = memchr(p, '\0', (size_t)(end - p));
        if (p == NULL)
            goto bad;
        p++;
        if (strcmp(tag, "F") == 0)
            break;
        f1 = p;
        p = memchr(p, '\0', (size_t)(end - p));
        if (p == NULL)
            goto bad;
        l1 = (size_t)(p++ - f1);
        if (strcmp(tag, "x") == 0 || strcmp(tag, "v") == 0) {
            f2 = p;
            p = memchr(p, '\0', (size_t)(end - p));
            if (p == NULL)
                goto bad;
            l2 = (size_t)(p++ - f2);
        }
        if (strcmp(tag, "c") == 0) {
            json_object_set_new(obj, "cwd", runtime__bash_text(f1, l1));
        } else if (f2 != NULL) {
            char name[256];
            if (l1 >= sizeof name)
                continue;
            memcpy(name, f1, l1);
            name[l1] = '\0';
            json_object_set_new(tag[0] == 'x' ? exported : vars, name, runtime__bash_text(f2, l2));
        }
    }
    /* `declare -F` lines: "declare -f name" (plus "-fx" for exported functions). */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end, *sp;
        size_t n;

        sp = memrchr(p, ' ', (size_t)(line_end - p));
        if (sp != NULL) {
            n = (size_t)(line_end - sp - 1);
            if (!(n >= 9 && memcmp(sp + 1, "__agentd_", 9) == 0))
                json_array_append_new(funcs, runtime__bash_text(sp + 1, n));
        }
        p = nl ? nl + 1 : end;
    }
    json_object_set_new(obj, "exported", exported);
    json_object_set_new(obj, "variables", vars);
    json_object_set_new(obj, "functions", funcs);
    return 0;

bad:
    json_decref(exported);
    json_decref(vars);
    json_decref(funcs);
    return -EPROTO;
}

const struct runtime__lang runtime__lang_bash = {
    .name = "bash",
    .search_name = "bash",
    .ctl_fd = 0,
    .init = runtime__bash_init,
    .state_code = runtime__bash_state,
    .nonce_in_code = 1,
    .args = (const char *const[]){"--norc", "--noprofile", "--noediting", "-i", NULL},
    .request = runtime__bash_request,
    .state_json = runtime__bash_state_json,
};
