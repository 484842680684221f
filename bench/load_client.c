/* The load campaign's clients in C (bench/load.py --client c, the default where a C compiler is
 * found): the same simulated browsers as bench/load_client.mjs and load_client.py, one epoll loop
 * per process. On a 2-core machine the Node.js clients took ~0.9 core that the server then lacked;
 * real browsers run on other machines.
 *
 * Input (stdin): `HOST PORT TOKEN LINES BEGINS UNTIL PER_ADDRESS`, then one `CLIENT RUN_ID` per line.
 * Output (stdout, JSON): the Tally fields of load_client.py, the histogram as [[bucket, count], ...].
 * Each simulated browser holds `/api/events` and one run's `/api/runs/<id>/events` from its first
 * event; every line `<index> <time>` is checked to arrive once and in order, and its delay from
 * print to arrival is counted in 0.1 ms buckets. Responses are HTTP/1.1, chunked or not. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET 1e-4
#define BUCKETS 200000
#define MAX_RUNS 256

enum { RUN, CHANGES };
enum { CONNECTING, HEAD, BODY, DONE };
enum { SIZE, DATA, DATA_END };

typedef struct Client Client;
typedef struct {
    Client *client;
    int fd, kind, state, chunked, chunk_state;
    long chunk_left;
    char *raw, *sse;  /* bytes read, not yet parsed: the HTTP head, then SSE text */
    size_t raw_len, raw_cap, sse_len, sse_cap;
} Conn;

struct Client {
    int number, run, bad, failed, conns_left;
    long next;
    double opened;
    char waiting[MAX_RUNS];  /* runs whose end this client's /api/events has not seen yet */
    int waiting_left;
    Conn conn[2];
};

static char host[64], token[256];
static int port, per_address, nruns, runs[MAX_RUNS], epfd;
static long lines_expected;
static double begins, until;
static unsigned histogram[BUCKETS];
static long opened, finished, lines, lost, duplicated, with_errors, changes_complete;
static char errors[10][200];
static int nerrors, open_conns;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = 0;
}

static void finish(Conn *c, const char *fmt, ...) {
    if (c->state == DONE) return;
    if (fmt) {
        c->client->failed = 1;
        if (nerrors < 10) {
            va_list ap;
            va_start(ap, fmt);
            int n = snprintf(errors[nerrors], sizeof errors[0], "client %d: ", c->client->number);
            vsnprintf(errors[nerrors] + n, sizeof errors[0] - n, fmt, ap);
            va_end(ap);
            nerrors++;
        }
    }
    c->state = DONE;
    close(c->fd);
    open_conns--;
    if (--c->client->conns_left == 0 && (c->client->failed || c->client->bad)) with_errors++;
}

static int run_index(long id) {
    for (int i = 0; i < nruns; i++)
        if (runs[i] == id) return i;
    return -1;
}

static int final(const char *s, size_t n) {
    static const char *names[] = {"succeeded", "failed", "cancelled", "timed_out", "interrupted", "rejected", "expired"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return 1;
    return 0;
}

/* Every JSON object at `depth` (objects and arrays both count) in `json`: its "id" and "state". */
static void records(Client *cl, const char *json, int depth) {
    int d = 0;
    long id = -1;
    const char *state = NULL;
    size_t state_len = 0;
    for (const char *p = json; *p; p++) {
        if (*p == '"') {
            const char *s = ++p;
            while (*p && *p != '"') p += (*p == '\\' && p[1]) ? 2 : 1;
            size_t n = p - s;
            if (d != depth) continue;
            const char *v = p + 1;
            while (*v == ' ' || *v == ':') v++;
            if (n == 2 && !memcmp(s, "id", 2)) id = strtol(v, NULL, 10);
            else if (n == 5 && !memcmp(s, "state", 5) && *v == '"') {
                state = v + 1;
                state_len = strcspn(state, "\"");
            }
        } else if (*p == '{' || *p == '[') {
            if (++d == depth) id = -1, state = NULL;
        } else if (*p == '}' || *p == ']') {
            if (d-- == depth && state && final(state, state_len)) {
                int i = run_index(id);
                if (i >= 0 && cl->waiting[i]) cl->waiting[i] = 0, cl->waiting_left--;
            }
        }
    }
}

static void event(Conn *c, const char *kind, const char *data, double arrived) {
    Client *cl = c->client;
    if (c->kind == RUN && !strcmp(kind, "output")) {
        const char *p = strstr(data, "\"lines\"");
        if (!p || !(p = strchr(p, '['))) return;
        for (p++; *p && *p != ']'; p++) {
            if (*p != '"') continue;
            char *end;
            long index = strtol(p + 1, &end, 10);
            double printed = strtod(end, &end);
            p = strchr(end, '"');
            if (!p) return;
            lines++;
            if (index == cl->next) cl->next++;
            else if (index < cl->next) duplicated++, cl->bad = 1;
            else lost += index - cl->next, cl->next = index + 1, cl->bad = 1;
            if (printed >= cl->opened) {
                long b = (long)((arrived - printed) / BUCKET);
                histogram[b < 0 ? 0 : b >= BUCKETS ? BUCKETS - 1 : b]++;
            }
        }
    } else if (c->kind == RUN && !strcmp(kind, "end")) {
        finished++;
        if (cl->next != lines_expected) lost += lines_expected - cl->next, cl->bad = 1;
        finish(c, NULL);
    } else if (c->kind == CHANGES) {
        if (!strcmp(kind, "ready")) records(cl, data, 3);
        else if (!strcmp(kind, "state")) records(cl, data, 1);
        if (cl->waiting_left == 0) changes_complete++, finish(c, NULL);
        else if (now() > until) finish(c, "/api/events: runs never seen ending");
    }
}

/* The complete SSE events in c->sse, each handed to event(). */
static void parse_sse(Conn *c, double arrived) {
    if (!c->sse) return;
    char *start = c->sse, *cut;
    while (c->state != DONE && (cut = strstr(start, "\n\n"))) {
        *cut = 0;
        const char *kind = NULL, *data = NULL;
        for (char *line = start; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            if (!strncmp(line, "event: ", 7)) kind = line + 7;
            else if (!strncmp(line, "data: ", 6)) data = line + 6;
            line = nl ? nl + 1 : NULL;
        }
        if (kind && data) event(c, kind, data, arrived);
        start = cut + 2;
    }
    if (c->state == DONE) return;
    c->sse_len -= start - c->sse;
    memmove(c->sse, start, c->sse_len + 1);
}

/* Body bytes: de-chunked into c->sse. */
static void body(Conn *c, const char *p, size_t n) {
    if (!c->chunked) {
        append(&c->sse, &c->sse_len, &c->sse_cap, p, n);
        return;
    }
    const char *end = p + n;
    while (p < end) {
        if (c->chunk_state == SIZE) {
            for (; p < end && *p != '\n'; p++) {
                int h = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                      : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10 : -1;
                if (h >= 0) c->chunk_left = c->chunk_left * 16 + h;
            }
            if (p < end) p++, c->chunk_state = c->chunk_left ? DATA : DATA_END;
        } else if (c->chunk_state == DATA) {
            size_t take = (size_t)(end - p) < (size_t)c->chunk_left ? (size_t)(end - p) : (size_t)c->chunk_left;
            append(&c->sse, &c->sse_len, &c->sse_cap, p, take);
            p += take;
            if (!(c->chunk_left -= take)) c->chunk_state = DATA_END;
        } else {  /* the CRLF after a chunk's data */
            for (; p < end && *p != '\n'; p++) {}
            if (p < end) p++, c->chunk_state = SIZE, c->chunk_left = 0;
        }
    }
}

static void readable(Conn *c) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) return finish(c, "%s: stream closed before its end", c->kind == RUN ? "run" : "/api/events");
        double arrived = now();
        const char *p = buf;
        if (c->state == HEAD) {
            append(&c->raw, &c->raw_len, &c->raw_cap, buf, n);
            char *head_end = strstr(c->raw, "\r\n\r\n");
            if (!head_end) continue;
            if (strncmp(c->raw, "HTTP/1.1 200", 12)) return finish(c, "HTTP %.3s", c->raw + 9);
            c->chunked = strstr(c->raw, "Transfer-Encoding: chunked") != NULL;
            c->state = BODY;
            if (c->kind == RUN) c->client->opened = arrived;
            if (arrived < begins) opened++;
            size_t used = head_end + 4 - c->raw;
            body(c, c->raw + used, c->raw_len - used);
        } else body(c, p, n);
        parse_sse(c, arrived);
        if (c->state == DONE) return;
    }
}

static void start(Client *cl, int kind) {
    Conn *c = &cl->conn[kind];
    c->client = cl, c->kind = kind, c->state = CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { perror("socket"); exit(1); }
    int group = cl->number / per_address;
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    char address[32];
    snprintf(address, sizeof address, "127.0.%d.%d", 1 + group / 250, 1 + group % 250);
    inet_pton(AF_INET, address, &src.sin_addr);
    inet_pton(AF_INET, host, &dst.sin_addr);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) { perror("bind"); exit(1); }
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) { perror("connect"); exit(1); }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    open_conns++;
}

static void writable(Conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return finish(c, "connect: %s", strerror(err));
    char path[64], request[512];
    if (c->kind == RUN) snprintf(path, sizeof path, "/api/runs/%d/events", c->client->run);
    else snprintf(path, sizeof path, "/api/events");
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                     "Accept: text/event-stream\r\n\r\n", path, host, port, token);
    if (write(c->fd, request, n) != n) return finish(c, "could not send the request");
    c->state = HEAD;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

int main(void) {
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    if (scanf("%63s %d %255s %ld %lf %lf %d", host, &port, token, &lines_expected, &begins, &until, &per_address) != 7)
        return fprintf(stderr, "load_client: bad input\n"), 2;
    int cap = 1024, count = 0, number, run;
    Client *clients = calloc(cap, sizeof *clients);
    while (scanf("%d %d", &number, &run) == 2) {
        if (count == cap) clients = realloc(clients, (cap *= 2) * sizeof *clients);
        clients[count] = (Client){.number = number, .run = run, .conns_left = 2};
        if (run_index(run) < 0 && nruns < MAX_RUNS) runs[nruns++] = run;
        count++;
    }
    epfd = epoll_create1(0);
    for (int i = 0; i < count; i++) {
        memset(clients[i].waiting, 1, nruns);
        clients[i].waiting_left = nruns;
        start(&clients[i], RUN);
        start(&clients[i], CHANGES);
    }
    struct epoll_event events[256];
    while (open_conns > 0) {
        int n = epoll_wait(epfd, events, 256, 1000);
        for (int i = 0; i < n; i++) {
            Conn *c = events[i].data.ptr;
            if (c->state == CONNECTING) writable(c);
            else if (c->state != DONE) readable(c);
        }
        if (now() > until)
            for (int i = 0; i < count; i++)
                for (int k = 0; k < 2; k++) finish(&clients[i].conn[k], "no end before the campaign's deadline");
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    printf("{\"clients\": %d, \"opened\": %ld, \"finished\": %ld, \"lines\": %ld, \"lost\": %ld, \"duplicated\": %ld, "
           "\"clients_with_errors\": %ld, \"changes_complete\": %ld, \"cpu\": %.3f, \"errors\": [",
           count, opened, finished, lines, lost, duplicated, with_errors, changes_complete, cpu);
    for (int i = 0; i < nerrors; i++) {
        printf("%s\"", i ? ", " : "");
        for (const char *p = errors[i]; *p; p++) printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
        printf("\"");
    }
    printf("], \"histogram\": [");
    for (int b = 0, first = 1; b < BUCKETS; b++)
        if (histogram[b]) printf("%s[%d, %u]", first ? "" : ", ", b, histogram[b]), first = 0;
    printf("]}\n");
    return 0;
}
