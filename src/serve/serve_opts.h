/*
 * serve_opts — the options of `agentd serve` (serve.c's): the table read from flags, AGENTD_<NAME>
 * and --config, and the checks the table cannot make (--listen's form, a token off loopback, which
 * options go with which store). Not for other modules.
 */
#ifndef AGENTD_SERVE_OPTS_H
#define AGENTD_SERVE_OPTS_H

#include <stddef.h>

struct serve_opts {
    char *listen;
    char *data;
    char *store;
    char *node_url;
    char *public_url;
    long long lease_ms;
    char *token;
    char *durability;
    long long long_poll_timeout;
    long long max_body;
    long long io_timeout;
    long long sse_max;
    long long max_queued;
    long long max_held;
    long long stream_cache;
    long long shards;
    char *shard_policy;
    long long runtime_idle;
    long long runtime_output_limit;
    long long runtime_spin;
    long long agent_idle;
    char *log_level;
    char *ui_dir;
    int no_ui;
};

/* Parses argv (argv[0] "serve") into o and checks it, filling host and port from --listen. 0; 1 for
 * --help (the usage was printed); -EINVAL having said why on stderr. serve_opts_free either way. */
int serve_opts_parse(struct serve_opts *o, int argc, char **argv, char *host, size_t hostlen, int *port);
void serve_opts_free(struct serve_opts *o);
/* A PostgreSQL connection string: a URL, or libpq's key=value form. */
int serve_opts_is_pg(const char *store);
/* A node's name among the nodes on one database: its --node-url, else host name and data dir (the
 * same agentd restarted is the same node, and takes its lease back at once). */
void serve_opts_node_name(const struct serve_opts *o, char *out, size_t len);

#endif
