/*
 * floor: what this machine charges for the two things an append -> SSE delivery cannot skip, measured
 * without any server, so that the SSE latency target can be read against the machine it runs on.
 *
 *   1. Durability: an fdatasync of a 4 KiB in-place overwrite of a preallocated file (like a commit
 *      to agentd's preallocated WAL), after the same idle gap as dsbench's live phases (10 ms).
 *   2. Fan-out: one thread writing one ~230-byte SSE-sized chunk to each of N loopback TCP sockets
 *      (TCP_NODELAY, a reader thread draining them, as a subscriber would), every 10 ms. Reported:
 *      the time until the write to the median subscriber returns, and the cost per socket.
 *
 * Their sum is a lower bound on append -> SSE p50 for a server that fsyncs before it delivers and
 * fans out from one thread: no HTTP parsing, no database, no wake-ups between threads counted.
 *
 * usage: floor DIR [--subscribers N] [--rounds N]   (DIR: where the server keeps its data)
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_GAP_US     10000 /* dsbench appends every 10 ms in its live phases */
#define FLOOR_FILE_BYTES (8 << 20)

static void die(const char *what)
{
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v in place; nearest-rank percentile. */
static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p * n + 0.5) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* 1. fdatasync after an idle gap, p50 in microseconds. */
static double floor_fsync(const char *dir, int rounds)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-fsync.tmp", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die(path);
    static char block[64 << 10];
    for (off_t off = 0; off < FLOOR_FILE_BYTES; off += (off_t)sizeof block)
        if (pwrite(fd, block, sizeof block, off) != (ssize_t)sizeof block)
            die("preallocating the fsync file");
    if (fdatasync(fd) != 0)
        die("fdatasync");
    double *lat = calloc((size_t)rounds, sizeof *lat);
    memset(block, 'x', 4096);
    for (int i = 0; i < rounds; i++) {
        usleep(FLOOR_GAP_US);
        double t0 = now_us();
        if (pwrite(fd, block, 4096, (off_t)(i % (FLOOR_FILE_BYTES / 4096)) * 4096) != 4096 ||
            fdatasync(fd) != 0)
            die("write + fdatasync");
        lat[i] = now_us() - t0;
    }
    close(fd);
    unlink(path);
    double p50 = pct(lat, rounds, 0.5);
    free(lat);
    return p50;
}

struct floor_reader {
    int ep;
};

static void *floor_drain(void *arg)
{
    struct floor_reader *r = arg;
    struct epoll_event ev[64];
    char buf[4096];
    for (;;) {
        int n = epoll_wait(r->ep, ev, 64, -1);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd < 0)
                return NULL; /* the stop pipe */
            while (read(ev[i].data.fd, buf, sizeof buf) > 0)
                ;
        }
    }
}

/* 2. One thread writing to n loopback sockets: *median_us until the median write returned (p50 over
 * rounds), *per_socket_us the mean cost of one write. */
static void floor_fanout(int n, int rounds, double *median_us, double *per_socket_us)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, n) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
        die("loopback listener");
    int *out = calloc((size_t)n, sizeof *out), stop[2];
    struct floor_reader r = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    if (r.ep < 0 || pipe2(stop, O_CLOEXEC) != 0)
        die("epoll");
    struct epoll_event e = {.events = EPOLLIN, .data.fd = -1};
    epoll_ctl(r.ep, EPOLL_CTL_ADD, stop[0], &e);
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
        if (c < 0 || (connect(c, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS))
            die("connect");
        if ((out[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            die("accept");
        setsockopt(out[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        e = (struct epoll_event){.events = EPOLLIN, .data.fd = c};
        epoll_ctl(r.ep, EPOLL_CTL_ADD, c, &e);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, floor_drain, &r) != 0)
        die("pthread_create");
    char data[200];
    memset(data, 'd', sizeof data);
    double *median = calloc((size_t)rounds, sizeof *median), total = 0;
    for (int round = 0; round < rounds; round++) {
        usleep(FLOOR_GAP_US);
        double t0 = now_us();
        for (int i = 0; i < n; i++) {
            /* a chunked SSE event: size line, "event: data" + payload + control event, CRLF */
            struct iovec v[3] = {{"e6\r\n", 4}, {data, sizeof data}, {"\r\n", 2}};
            if (writev(out[i], v, 3) < 0)
                die("writev");
            if (i == n / 2)
                median[round] = now_us() - t0;
        }
        total += now_us() - t0;
    }
    *median_us = pct(median, rounds, 0.5);
    *per_socket_us = total / rounds / n;
    if (write(stop[1], "x", 1) != 1)
        die("stopping the reader");
    pthread_join(th, NULL);
    free(median);
    free(out);
}

int main(int argc, char **argv)
{
    int n = 100, rounds = 200;
    if (argc < 2 || argv[1][0] == '-') {
        fputs("usage: floor DIR [--subscribers N] [--rounds N]\n", stderr);
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--subscribers") == 0)
            n = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    }
    if (n < 2 || rounds < 10) {
        fputs("floor: --subscribers >= 2, --rounds >= 10\n", stderr);
        return 2;
    }
    double fsync_us = floor_fsync(argv[1], rounds), median_us, per_us;
    floor_fanout(n, rounds, &median_us, &per_us);
    printf("machine floor (no server): fdatasync after a %d ms gap p50 %.3f ms; one thread writing to %d\n"
           "loopback sockets: %.1f us per socket, %.3f ms to the median one; so append -> SSE p50 with\n"
           "%d subscribers >= %.3f ms for any server that fsyncs first and fans out from one thread\n",
           FLOOR_GAP_US / 1000, fsync_us / 1e3, n, per_us, median_us / 1e3, n, (fsync_us + median_us) / 1e3);
    return 0;
}
