/*
 * vfleet: N virtual workers in one process and one thread, speaking wire
 * v2 over real sockets, so the host's cost can be measured as the fleet
 * grows (scripts/bench --fleet). Each virtual worker does what a real
 * `worker --sleep MS` does (src/bp_worker.c): one DEALER to the
 * ventilator whose channel is a bp_wchan (HELLO with its id, jobs and
 * credit; a heartbeat every --heartbeat; reconnect when the ventilator
 * goes silent; RESYNC), tasks queued and "run" for --sleep ms each (a
 * timer, no process), then RESULTS to the sink and CREDIT (done ids, the
 * credit topped up to the window) to the ventilator. END ends it.
 *
 * Sockets: one task DEALER per virtual worker; result DEALERs to the sink
 * one per virtual worker too, unless the descriptor limit does not allow
 * it (each ZeroMQ socket costs two descriptors: its mailbox and its
 * connection): then as many as fit, shared round-robin (--sink-sockets
 * forces a number). The loop is epoll over the task sockets' ZMQ_FD and a
 * binary heap of each worker's next deadline, so a quiet worker costs
 * nothing per turn.
 *
 * Prints one JSON object on stdout: counts, the time from the first task
 * received to the last result sent (makespan), heartbeats sent and
 * received. A result is the task's bytes (at most QDATA of them).
 * Exit 0 when every virtual worker got END, 1 on a timeout or error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bp_frame.h"
#include "bp_wchan.h"

#define QDATA 64
#define ID_MAX 24

struct qt {
    uint64_t id, batch;
    uint16_t attempt;
    uint8_t flags, len;
    uint8_t data[QDATA];
};

struct vslot {
    int64_t end;
    int busy;
    struct qt t;
};

struct vw {
    void *tsock;
    void *rsock; /* maybe shared */
    struct bp_wchan ch;
    struct qt *q;
    uint32_t qhead, qlen, qcap;
    struct vslot *slots;
    int busy;
    struct qt *res; /* finished, not sent to the sink yet */
    uint32_t nres;
    uint64_t *done; /* sent to the sink, not told the ventilator yet */
    uint32_t ndone;
    uint64_t done_batch;
    int64_t wake;
    int ended, finished;
    char id[ID_MAX];
};

struct hent {
    int64_t t;
    uint32_t i;
};

struct fleet {
    /* options */
    const char *tasks_ep, *results_ep;
    uint32_t n, sink_socks;
    int jobs, prefetch, sleep_ms, hb_ms, liveness, timeout_s;
    /* state */
    void *ctx;
    int ep;
    struct vw *w;
    void **rsocks;
    struct hent *h;
    size_t hlen, hcap;
    struct bp_pack pk;
    uint32_t finished, connected;
    /* counts */
    int64_t t0, t_connected, t_first_task, t_last_result;
    uint64_t hb_sent, hb_recv, hello_sent, credit_sent, results_msgs, results_sent;
    uint64_t tasks_recv, tasks_msgs, redelivered, resync, reopen, dropped, send_again, no_socket;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the timer heap (lazy: an entry whose time is not its worker's
 * current wake is skipped) ---- */

static void heap_push(struct fleet *f, int64_t t, uint32_t i)
{
    if (f->hlen == f->hcap) {
        size_t cap = f->hcap ? f->hcap * 2 : 1024;
        struct hent *p = realloc(f->h, cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "vfleet: out of memory\n");
            exit(1);
        }
        f->h = p;
        f->hcap = cap;
    }
    size_t k = f->hlen++;
    while (k > 0 && f->h[(k - 1) / 2].t > t) {
        f->h[k] = f->h[(k - 1) / 2];
        k = (k - 1) / 2;
    }
    f->h[k] = (struct hent){t, i};
}

static struct hent heap_pop(struct fleet *f)
{
    struct hent top = f->h[0];
    struct hent last = f->h[--f->hlen];
    size_t k = 0;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= f->hlen)
            break;
        if (c + 1 < f->hlen && f->h[c + 1].t < f->h[c].t)
            c++;
        if (f->h[c].t >= last.t)
            break;
        f->h[k] = f->h[c];
        k = c;
    }
    if (f->hlen)
        f->h[k] = last;
    return top;
}

/* ---- sockets ---- */

/* A connected DEALER, or NULL (said once) when none can be made now. */
static void *dealer(struct fleet *f, const char *ep)
{
    static int said;
    void *s = zmq_socket(f->ctx, ZMQ_DEALER);
    int zero = 0;
    if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0 || zmq_connect(s, ep) != 0) {
        if (!said++)
            fprintf(stderr, "vfleet: socket to %s: %s\n", ep, zmq_strerror(errno));
        if (s)
            zmq_close(s);
        return NULL;
    }
    return s;
}

/* Returns -1 when no socket can be made now (out of descriptors while
 * closed sockets wait for libzmq's reaper): the caller tries again. */
static int open_task_socket(struct fleet *f, uint32_t i)
{
    struct vw *w = &f->w[i];
    w->tsock = dealer(f, f->tasks_ep);
    if (!w->tsock)
        return -1;
    int fd;
    size_t sz = sizeof fd;
    zmq_getsockopt(w->tsock, ZMQ_FD, &fd, &sz);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = i};
    if (epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fprintf(stderr, "vfleet: epoll_ctl: %s\n", strerror(errno));
        exit(1);
    }
    return 0;
}

static void close_task_socket(struct fleet *f, struct vw *w)
{
    int fd;
    size_t sz = sizeof fd;
    if (!w->tsock)
        return;
    if (zmq_getsockopt(w->tsock, ZMQ_FD, &fd, &sz) == 0)
        epoll_ctl(f->ep, EPOLL_CTL_DEL, fd, NULL);
    zmq_close(w->tsock);
    w->tsock = NULL;
}

static int send_vent(struct fleet *f, struct vw *w)
{
    if (!w->tsock || bp_pack_finish(&f->pk) != BP_OK)
        return -1;
    return zmq_send(w->tsock, f->pk.p, f->pk.len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* ---- one virtual worker ---- */

static int64_t held(const struct vw *w)
{
    return (int64_t)w->qlen + w->busy + w->nres;
}

static int64_t window(const struct fleet *f)
{
    return (int64_t)f->jobs + f->prefetch;
}

static void send_hello(struct fleet *f, struct vw *w, int64_t now)
{
    int64_t credit = window(f) - held(w);
    if (credit < 0 || w->ended)
        credit = 0;
    size_t idl = strlen(w->id);
    bp_pack_begin(&f->pk, BP_MSG_HELLO, 0);
    bp_pack_u16(&f->pk, (uint16_t)f->jobs);
    bp_pack_u16(&f->pk, 0);
    bp_pack_u32(&f->pk, (uint32_t)credit);
    bp_pack_u8(&f->pk, (uint8_t)idl);
    bp_pack_bytes(&f->pk, w->id, idl);
    int rc = send_vent(f, w);
    bp_wchan_hello_sent(&w->ch, now, credit, rc == 0);
    f->hello_sent += rc == 0;
}

static void send_heartbeat(struct fleet *f, struct vw *w, int64_t now)
{
    bp_pack_begin(&f->pk, BP_MSG_HEARTBEAT, w->ch.batch);
    bp_pack_u64(&f->pk, (uint64_t)now | 1);
    bp_pack_u64(&f->pk, 0);
    if (send_vent(f, w) == 0)
        f->hb_sent++;
    bp_wchan_hb_sent(&w->ch, now);
}

/* Done ids and credit topped up to the window, as bp_worker's
 * send_credit() does for tasks that are not instant. */
static void send_credit(struct fleet *f, struct vw *w)
{
    int64_t grant = w->ended ? 0 : bp_wchan_grant(&w->ch, window(f) - held(w));
    if (!w->ndone && !grant)
        return;
    bp_pack_begin(&f->pk, BP_MSG_CREDIT, w->ndone ? w->done_batch : w->ch.batch);
    bp_pack_u32(&f->pk, (uint32_t)grant);
    for (uint32_t i = 0; i < w->ndone; i++)
        bp_pack_id(&f->pk, w->done[i]);
    if (send_vent(f, w) == 0) {
        bp_wchan_granted(&w->ch, grant);
        f->credit_sent++;
    }
    w->ndone = 0;
}

/* RESULTS for what finished (one batch per message), then CREDIT. */
static void flush_results(struct fleet *f, struct vw *w, int64_t now)
{
    while (w->nres) {
        uint64_t batch = w->res[0].batch;
        uint32_t k = 0;
        bp_pack_begin(&f->pk, BP_MSG_RESULTS, batch);
        bp_pack_u8(&f->pk, (uint8_t)strlen(w->id));
        bp_pack_bytes(&f->pk, w->id, strlen(w->id));
        for (; k < w->nres && w->res[k].batch == batch; k++) {
            const struct qt *t = &w->res[k];
            struct bp_result_rec r = {.id = t->id,
                                      .attempt = t->attempt,
                                      .status = BP_ST_OK,
                                      .flags = BP_RF_FINAL,
                                      .elapsed_ms = (uint32_t)f->sleep_ms,
                                      .data = t->data,
                                      .len = t->len};
            bp_pack_result(&f->pk, &r);
        }
        if (bp_pack_finish(&f->pk) != BP_OK ||
            zmq_send(w->rsock, f->pk.p, f->pk.len, ZMQ_DONTWAIT) < 0) {
            f->send_again++;
            return; /* tried again at the next step */
        }
        f->results_msgs++;
        f->results_sent += k;
        f->t_last_result = now;
        if (w->ndone && w->done_batch != batch)
            send_credit(f, w);
        for (uint32_t j = 0; j < k; j++)
            w->done[w->ndone++] = w->res[j].id;
        w->done_batch = batch;
        w->nres -= k;
        memmove(w->res, w->res + k, w->nres * sizeof *w->res);
    }
    send_credit(f, w);
}

static void drop_queue(struct fleet *f, struct vw *w)
{
    f->dropped += w->qlen;
    w->qlen = 0;
    w->qhead = 0;
}

/* Finishes the slots whose time is up and starts queued tasks. */
static void run_slots(struct fleet *f, struct vw *w, int64_t now)
{
    for (int i = 0; i < f->jobs; i++) {
        struct vslot *s = &w->slots[i];
        if (s->busy && now >= s->end) {
            w->res[w->nres++] = s->t;
            s->busy = 0;
            w->busy--;
        }
        if (!s->busy && w->qlen && !w->ended) {
            s->t = w->q[w->qhead];
            w->qhead = (w->qhead + 1) % w->qcap;
            w->qlen--;
            s->busy = 1;
            s->end = now + f->sleep_ms;
            w->busy++;
        }
    }
}

static void on_tasks(struct fleet *f, struct vw *w, const struct bp_msg *m, int64_t now)
{
    size_t off = 0;
    struct bp_task_rec tr;
    if (!f->t_first_task)
        f->t_first_task = now;
    f->tasks_msgs++;
    while (bp_msg_next_task(m, &off, &tr)) {
        f->tasks_recv++;
        f->redelivered += tr.attempt > 1;
        if (w->qlen == w->qcap || w->ended) {
            f->dropped++; /* more than the credit: the ventilator gets it back */
            continue;
        }
        struct qt *t = &w->q[(w->qhead + w->qlen++) % w->qcap];
        t->id = tr.id;
        t->batch = m->batch;
        t->attempt = tr.attempt;
        t->flags = tr.flags;
        t->len = (uint8_t)(tr.len < QDATA ? tr.len : QDATA);
        memcpy(t->data, tr.data, t->len);
    }
}

static void on_vent(struct fleet *f, struct vw *w, const void *buf, size_t len, int64_t now)
{
    struct bp_msg m;
    if (bp_msg_decode(&m, buf, len, 0) != BP_OK)
        return;
    int was = w->ch.ever_connected;
    int what = bp_wchan_on_msg(&w->ch, &m, now);
    if ((what & BP_WC_CONNECTED) && !was && ++f->connected == f->n)
        f->t_connected = now;
    if (what & BP_WC_DROP) {
        f->resync++;
        drop_queue(f, w);
    }
    if (m.type == BP_MSG_TASKS)
        on_tasks(f, w, &m, now);
    else if (m.type == BP_MSG_HEARTBEAT)
        f->hb_recv++;
    else if (m.type == BP_MSG_END) {
        w->ended = 1;
        drop_queue(f, w);
    }
}

static void read_vent(struct fleet *f, struct vw *w, int64_t now)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (w->tsock && zmq_msg_recv(&msg, w->tsock, ZMQ_DONTWAIT) >= 0)
        on_vent(f, w, zmq_msg_data(&msg), zmq_msg_size(&msg), now);
    zmq_msg_close(&msg);
}

static int64_t next_wake(const struct fleet *f, const struct vw *w)
{
    if (w->finished)
        return INT64_MAX;
    int64_t n = w->nres ? now_ms() + 10 : bp_wchan_next_deadline(&w->ch);
    if (!w->tsock && !w->ended)
        n = now_ms() + 100; /* a new socket, when descriptors allow */
    for (int i = 0; i < f->jobs; i++)
        if (w->slots[i].busy && w->slots[i].end < n)
            n = w->slots[i].end;
    return n;
}

/* Everything a worker has to do at now, then its next wake-up. */
static void step(struct fleet *f, uint32_t i, int64_t now)
{
    struct vw *w = &f->w[i];
    if (w->finished)
        return;
    read_vent(f, w, now);
    int what = w->ended ? 0 : bp_wchan_on_timer(&w->ch, now);
    if (what & BP_WC_REOPEN) {
        drop_queue(f, w);
        close_task_socket(f, w);
        f->reopen++;
    }
    if (!w->tsock && !w->ended && open_task_socket(f, i) != 0)
        f->no_socket++;
    run_slots(f, w, now);
    flush_results(f, w, now);
    int due = w->ended ? 0 : bp_wchan_due(&w->ch, now);
    if (due == BP_MSG_HELLO)
        send_hello(f, w, now);
    else if (due == BP_MSG_HEARTBEAT)
        send_heartbeat(f, w, now);
    read_vent(f, w, now); /* (a send may have taken ZMQ_FD's edge) */
    run_slots(f, w, now);
    if (w->ended && !w->busy && !w->nres) {
        w->finished = 1;
        f->finished++;
        close_task_socket(f, w);
    }
    int64_t wake = next_wake(f, w);
    if (wake != w->wake && wake != INT64_MAX)
        heap_push(f, wake, i);
    w->wake = wake;
}

/* ---- set-up, loop, report ---- */

static void raise_nofile(struct fleet *f)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    /* Two descriptors per ZeroMQ socket (mailbox, connection), and a
     * margin for libzmq's own and for sockets closed but not reaped yet. */
    uint64_t room = rl.rlim_cur > 1024 ? (rl.rlim_cur - 1024) / 2 : 0;
    if (room < (uint64_t)f->n + 1) {
        fprintf(stderr, "vfleet: %" PRIu64 " descriptors allow %" PRIu64 " sockets, not %u\n",
                (uint64_t)rl.rlim_cur, room, f->n + 1);
        exit(1);
    }
    uint64_t fit = room - f->n;
    if (!f->sink_socks)
        f->sink_socks = fit < f->n ? (uint32_t)fit : f->n;
    if (f->sink_socks > f->n)
        f->sink_socks = f->n;
}

static void setup(struct fleet *f)
{
    raise_nofile(f);
    f->ctx = zmq_ctx_new();
    zmq_ctx_set(f->ctx, ZMQ_MAX_SOCKETS, (int)(2 * (f->n + f->sink_socks) + 64));
    f->ep = epoll_create1(0);
    f->w = calloc(f->n, sizeof *f->w);
    f->rsocks = calloc(f->sink_socks, sizeof *f->rsocks);
    if (!f->ctx || f->ep < 0 || !f->w || !f->rsocks) {
        fprintf(stderr, "vfleet: set-up failed: %s\n", strerror(errno));
        exit(1);
    }
    for (uint32_t k = 0; k < f->sink_socks; k++)
        if (!(f->rsocks[k] = dealer(f, f->results_ep)))
            exit(1);
    struct bp_wchan_cfg cc = {.hb_ms = f->hb_ms, .liveness = f->liveness, .max_backoff_ms = 30000};
    int64_t now = now_ms();
    uint32_t cap = (uint32_t)window(f) + 1;
    for (uint32_t i = 0; i < f->n; i++) {
        struct vw *w = &f->w[i];
        w->qcap = cap;
        w->q = calloc(cap, sizeof *w->q);
        w->res = calloc(cap + (uint32_t)f->jobs, sizeof *w->res);
        w->done = calloc(cap + (uint32_t)f->jobs, sizeof *w->done);
        w->slots = calloc((size_t)f->jobs, sizeof *w->slots);
        if (!w->q || !w->res || !w->done || !w->slots) {
            fprintf(stderr, "vfleet: out of memory\n");
            exit(1);
        }
        snprintf(w->id, sizeof w->id, "v%05u", i);
        w->rsock = f->rsocks[i % f->sink_socks];
        bp_wchan_init(&w->ch, &cc, now);
        if (open_task_socket(f, i) != 0)
            exit(1);
        w->wake = now;
        heap_push(f, now, i);
    }
}

static int loop(struct fleet *f)
{
    struct epoll_event ev[512];
    int64_t end = f->t0 + (int64_t)f->timeout_s * 1000;
    while (f->finished < f->n) {
        int64_t now = now_ms();
        if (now >= end)
            return 1;
        while (f->hlen && f->h[0].t <= now) {
            struct hent e = heap_pop(f);
            if (e.t == f->w[e.i].wake)
                step(f, e.i, now);
        }
        int64_t wake = f->hlen ? f->h[0].t : now + 1000;
        int tmo = wake <= now ? 0 : wake - now > 1000 ? 1000 : (int)(wake - now);
        int n = epoll_wait(f->ep, ev, 512, tmo);
        now = now_ms();
        for (int k = 0; k < n; k++)
            step(f, ev[k].data.u32, now);
    }
    return 0;
}

static void report(const struct fleet *f, int rc)
{
    int64_t span = f->t_last_result - f->t_first_task;
    printf("{\"workers\": %u, \"sink_sockets\": %u, \"jobs\": %d, \"sleep_ms\": %d, "
           "\"heartbeat_ms\": %d, \"ok\": %s, \"connect_s\": %.3f, \"makespan_s\": %.3f, "
           "\"wall_s\": %.3f, \"tasks\": %" PRIu64 ", \"task_msgs\": %" PRIu64
           ", \"results\": %" PRIu64 ", \"result_msgs\": %" PRIu64 ", \"credit_msgs\": %" PRIu64
           ", \"hello\": %" PRIu64 ", \"hb_sent\": %" PRIu64 ", \"hb_recv\": %" PRIu64
           ", \"redelivered\": %" PRIu64 ", \"resync\": %" PRIu64 ", \"reopen\": %" PRIu64
           ", \"dropped\": %" PRIu64 ", \"send_again\": %" PRIu64 ", \"no_socket\": %" PRIu64 "}\n",
           f->n, f->sink_socks, f->jobs, f->sleep_ms, f->hb_ms, rc == 0 ? "true" : "false",
           f->t_connected ? (double)(f->t_connected - f->t0) / 1000 : -1.0, (double)span / 1000,
           (double)(now_ms() - f->t0) / 1000, f->tasks_recv, f->tasks_msgs, f->results_sent,
           f->results_msgs, f->credit_sent, f->hello_sent, f->hb_sent, f->hb_recv, f->redelivered,
           f->resync, f->reopen, f->dropped, f->send_again, f->no_socket);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: vfleet --tasks EP --results EP --workers N [--jobs J (1)]\n"
                    "  [--prefetch P (0)] [--sleep MS (100)] [--heartbeat MS (1000)]\n"
                    "  [--liveness L (3)] [--sink-sockets K (0: one per worker if the\n"
                    "  descriptors allow)] [--timeout S (600)]\n");
    exit(2);
}

static void parse(struct fleet *f, int argc, char **argv)
{
    static const char *names[] = {"workers",   "jobs",     "prefetch",     "sleep",
                                  "heartbeat", "liveness", "sink-sockets", "timeout"};
    enum { NNUM = sizeof names / sizeof names[0] };
    int num[NNUM] = {100, 1, 0, 100, 1000, 3, 0, 600};
    struct option lo[NNUM + 3];
    for (int k = 0; k < NNUM; k++)
        lo[k] = (struct option){names[k], 1, 0, k};
    lo[NNUM] = (struct option){"tasks", 1, 0, 't'};
    lo[NNUM + 1] = (struct option){"results", 1, 0, 'r'};
    lo[NNUM + 2] = (struct option){0, 0, 0, 0};
    *f = (struct fleet){0};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c >= 0 && c < NNUM)
            num[c] = (int)strtol(optarg, NULL, 10);
        else if (c == 't')
            f->tasks_ep = optarg;
        else if (c == 'r')
            f->results_ep = optarg;
        else
            usage();
    }
    f->n = (uint32_t)num[0];
    f->jobs = num[1];
    f->prefetch = num[2];
    f->sleep_ms = num[3];
    f->hb_ms = num[4];
    f->liveness = num[5];
    f->sink_socks = (uint32_t)num[6];
    f->timeout_s = num[7];
    if (!f->tasks_ep || !f->results_ep || num[0] < 1 || num[0] > 100000 || f->jobs < 1 ||
        f->jobs > 1024 || f->prefetch < 0 || f->sleep_ms < 0 || f->hb_ms < 10 || f->liveness < 1 ||
        num[6] < 0)
        usage();
}

int main(int argc, char **argv)
{
    struct fleet f;
    parse(&f, argc, argv);
    f.t0 = now_ms();
    bp_pack_init(&f.pk);
    setup(&f);
    int rc = loop(&f);
    if (rc)
        fprintf(stderr, "vfleet: timed out: %u of %u workers ended\n", f.finished, f.n);
    report(&f, rc);
    /* Results still queued in the sink sockets go out before the exit. */
    int linger = 2000;
    for (uint32_t k = 0; k < f.sink_socks; k++)
        zmq_setsockopt(f.rsocks[k], ZMQ_LINGER, &linger, sizeof linger);
    for (uint32_t i = 0; i < f.n; i++)
        close_task_socket(&f, &f.w[i]);
    for (uint32_t k = 0; k < f.sink_socks; k++)
        zmq_close(f.rsocks[k]);
    zmq_ctx_term(f.ctx);
    for (uint32_t i = 0; i < f.n; i++) {
        free(f.w[i].q);
        free(f.w[i].res);
        free(f.w[i].done);
        free(f.w[i].slots);
    }
    free(f.w);
    free(f.rsocks);
    free(f.h);
    bp_pack_free(&f.pk);
    close(f.ep);
    return rc;
}
