/*
 * curlx — libcurl through dlopen. See curlx.h.
 *
 * One list names every libcurl function agentd calls; it defines the curlx_<name> pointers and the
 * table curlx_load resolves them from, so the two cannot disagree. The library handle is kept
 * (never dlclose()d) for the life of the process.
 */
#include "curlx/curlx.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The soname of libcurl 7.16 and later (Debian and Ubuntu package libcurl4, with OpenSSL). */
#define CURLX_SONAME "libcurl.so.4"

/* Every function curlx.h declares, by its name without the curl_ prefix. */
// clang-format off: an X-macro list, one name per line
#define CURLX__FUNCTIONS(X) \
    X(global_init)          \
    X(global_cleanup)       \
    X(free)                 \
    X(easy_init)            \
    X(easy_cleanup)         \
    X(easy_reset)           \
    X(easy_perform)         \
    X(easy_strerror)        \
    X(easy_setopt)          \
    X(easy_getinfo)         \
    X(multi_init)           \
    X(multi_cleanup)        \
    X(multi_setopt)         \
    X(multi_add_handle)     \
    X(multi_remove_handle)  \
    X(multi_assign)         \
    X(multi_socket_action)  \
    X(multi_info_read)      \
    X(slist_append)         \
    X(slist_free_all)       \
    X(url)                  \
    X(url_cleanup)          \
    X(url_get)              \
    X(url_set)
// clang-format on

#define CURLX__DEFINE(name) __typeof__(curl_##name) *curlx_##name;
CURLX__FUNCTIONS(CURLX__DEFINE)

/* Where each symbol goes: slot is the address of its curlx_<name> pointer. */
#define CURLX__SYMBOL(name) {"curl_" #name, &curlx_##name},
static const struct {
    const char *symbol;
    void *slot;
} curlx__symbols[] = {CURLX__FUNCTIONS(CURLX__SYMBOL)};

/* POSIX guarantees dlsym's void * converts to a function pointer; the slots are filled by copying. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)), "function and data pointers differ in size");

static int curlx__loaded;
static char curlx__error[256];

int curlx_load(void)
{
    if (curlx__loaded)
        return 0;
    void *lib = dlopen(CURLX_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(curlx__error, sizeof curlx__error, "%s", dlerror());
        return -ENOENT;
    }
    /* Resolve everything before setting anything, so a partial libcurl leaves every pointer NULL. */
    void *found[CORE_ARRAY_LEN(curlx__symbols)];
    for (size_t i = 0; i < CORE_ARRAY_LEN(curlx__symbols); i++) {
        if ((found[i] = dlsym(lib, curlx__symbols[i].symbol)) == NULL) {
            snprintf(curlx__error, sizeof curlx__error, "%s has no %s (libcurl too old)", CURLX_SONAME,
                     curlx__symbols[i].symbol);
            dlclose(lib);
            return -ENOENT;
        }
    }
    for (size_t i = 0; i < CORE_ARRAY_LEN(curlx__symbols); i++)
        memcpy(curlx__symbols[i].slot, &found[i], sizeof found[i]);
    curlx__loaded = 1;
    return 0;
}

const char *curlx_load_error(void) { return curlx__error; }
