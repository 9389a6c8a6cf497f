/* bp_sock: socket set-up and single-frame messages through real libzmq
 * PUSH/PULL and ROUTER/DEALER pairs over tcp loopback (under qemu in cross
 * builds). Each test gets its own context and sockets; the per-test
 * teardown checks they all close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bp_role.h"
#include "bp_sock.h"

/* Generous: qemu on a busy CI machine. */
#define WAIT_MS 60000

struct pair {
    void *ctx, *pull, *push, *router, *dealer;
    char ep[BP_ENDPOINT_MAX];
};

static int setup(void **state)
{
    static struct pair p;
    char err[256];
    memset(&p, 0, sizeof p);
    p.ctx = bp_ctx_new();
    assert_non_null(p.ctx);
    struct bp_sockcfg c = {.linger_ms = 0, .max_msg = 4096};
    /* Port 0 of the kernel's choosing: tests never collide on ports. */
    p.pull = bp_sock_open(p.ctx, ZMQ_PULL, "tcp://127.0.0.1:*", 1, &c, err, sizeof err);
    assert_non_null(p.pull);
    assert_int_equal(bp_sock_endpoint(p.pull, p.ep, sizeof p.ep), BP_OK);
    assert_non_null(strstr(p.ep, "tcp://127.0.0.1:"));
    p.push = bp_sock_open(p.ctx, ZMQ_PUSH, p.ep, 0, &c, err, sizeof err);
    assert_non_null(p.push);
    int tmo = WAIT_MS;
    assert_int_equal(zmq_setsockopt(p.pull, ZMQ_RCVTIMEO, &tmo, sizeof tmo), 0);
    *state = &p;
    return 0;
}

/* Runs after each test (cmocka_unit_test_setup_teardown): a failed check
 * here fails that test. (cmocka 1.1.5 reports a failing group teardown but
 * still exits 0, so these checks must not live there.) */
static int teardown(void **state)
{
    struct pair *p = *state;
    bp_sock_close(&p->push);
    bp_sock_close(&p->pull);
    bp_sock_close(&p->router);
    bp_sock_close(&p->dealer);
    assert_null(p->push);
    assert_null(p->pull);
    assert_null(p->router);
    assert_null(p->dealer);
    /* Every socket really closed: with one left open zmq_ctx_term blocks
     * (CTest's timeout), with none it returns 0. */
    assert_int_equal(zmq_ctx_term(p->ctx), 0);
    p->ctx = NULL;
    return 0;
}

/* A ROUTER (unroutable sends fail) bound on a kernel-chosen port and a
 * DEALER with routing id "board-1" connected to it. */
static void router_dealer(struct pair *p)
{
    char err[256], ep[BP_ENDPOINT_MAX];
    struct bp_sockcfg rc = {.linger_ms = 0, .max_msg = 4096, .router_mandatory = 1};
    p->router = bp_sock_open(p->ctx, ZMQ_ROUTER, "tcp://127.0.0.1:*", 1, &rc, err, sizeof err);
    assert_non_null(p->router);
    assert_int_equal(bp_sock_endpoint(p->router, ep, sizeof ep), BP_OK);
    struct bp_sockcfg dc = {.linger_ms = 0, .max_msg = 4096};
    /* The two halves of bp_sock_open: the routing id goes in between. */
    p->dealer = bp_sock_new(p->ctx, ZMQ_DEALER, &dc, err, sizeof err);
    assert_non_null(p->dealer);
    assert_int_equal(zmq_setsockopt(p->dealer, ZMQ_ROUTING_ID, "board-1", 7), 0);
    assert_int_equal(bp_sock_attach(&p->dealer, ep, 0, err, sizeof err), BP_OK);
    int tmo = WAIT_MS;
    assert_int_equal(zmq_setsockopt(p->router, ZMQ_RCVTIMEO, &tmo, sizeof tmo), 0);
    assert_int_equal(zmq_setsockopt(p->dealer, ZMQ_RCVTIMEO, &tmo, sizeof tmo), 0);
}

static void t_roundtrip_over_tcp(void **state)
{
    struct pair *p = *state;
    const char body[] = "bp\x02\x03 a whole message in one frame";
    assert_int_equal(bp_send_raw(p->push, body, sizeof body, 0), BP_OK);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_raw(p->pull, &m, 0), BP_OK);
    assert_int_equal(zmq_msg_size(&m), sizeof body);
    assert_memory_equal(zmq_msg_data(&m), body, sizeof body);
    /* An empty frame is a message too. */
    assert_int_equal(bp_send_raw(p->push, "", 0, 0), BP_OK);
    assert_int_equal(bp_recv_raw(p->pull, &m, 0), BP_OK);
    assert_int_equal(zmq_msg_size(&m), 0);
    zmq_msg_close(&m);
}

/* A multi-frame message is not a boardpipe message: consumed whole and
 * refused, and the socket works on afterwards. */
static void t_extra_frames_are_consumed(void **state)
{
    struct pair *p = *state;
    assert_true(zmq_send(p->push, "a", 1, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(p->push, "b", 1, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(p->push, "c", 1, 0) >= 0);
    assert_int_equal(bp_send_raw(p->push, "ok", 2, 0), BP_OK);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_raw(p->pull, &m, 0), BP_EPROTO);
    assert_int_equal(bp_recv_raw(p->pull, &m, 0), BP_OK);
    assert_int_equal(zmq_msg_size(&m), 2);
    assert_memory_equal(zmq_msg_data(&m), "ok", 2);
    zmq_msg_close(&m);
}

static void t_nothing_waiting(void **state)
{
    struct pair *p = *state;
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_raw(p->pull, &m, ZMQ_DONTWAIT), BP_ETIMEDOUT);
    assert_int_equal(bp_sock_readable(p->pull), 0);
    zmq_msg_close(&m);
}

static void t_readable_writable(void **state)
{
    struct pair *p = *state;
    assert_int_equal(bp_sock_readable(p->pull), 0);
    assert_int_equal(bp_sock_writable(p->push), 1); /* connected: a pipe exists */
    assert_int_equal(bp_send_raw(p->push, "x", 1, 0), BP_OK);
    zmq_pollitem_t it = {.socket = p->pull, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);
    assert_int_equal(bp_sock_readable(p->pull), 1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_raw(p->pull, &m, 0), BP_OK);
    assert_int_equal(bp_sock_readable(p->pull), 0);
    zmq_msg_close(&m);
}

static void t_router_roundtrip(void **state)
{
    struct pair *p = *state;
    router_dealer(p);
    assert_int_equal(bp_send_raw(p->dealer, "hello", 5, 0), BP_OK);
    zmq_msg_t rid, m;
    zmq_msg_init(&rid);
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_from(p->router, &rid, &m, 0), BP_OK);
    assert_int_equal(zmq_msg_size(&rid), 7);
    assert_memory_equal(zmq_msg_data(&rid), "board-1", 7);
    assert_int_equal(zmq_msg_size(&m), 5);
    assert_memory_equal(zmq_msg_data(&m), "hello", 5);
    assert_int_equal(bp_send_to(p->router, "board-1", 7, "welcome", 7, 0), BP_OK);
    assert_int_equal(bp_recv_raw(p->dealer, &m, 0), BP_OK);
    assert_int_equal(zmq_msg_size(&m), 7);
    assert_memory_equal(zmq_msg_data(&m), "welcome", 7);
    /* ZMQ_ROUTER_MANDATORY: a peer that is not there is an error. */
    assert_int_equal(bp_send_to(p->router, "nobody", 6, "x", 1, 0), BP_EIO);
    zmq_msg_close(&rid);
    zmq_msg_close(&m);
}

static void t_recv_from_extra_frames(void **state)
{
    struct pair *p = *state;
    router_dealer(p);
    assert_true(zmq_send(p->dealer, "a", 1, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(p->dealer, "b", 1, 0) >= 0);
    assert_int_equal(bp_send_raw(p->dealer, "ok", 2, 0), BP_OK);
    zmq_msg_t rid, m;
    zmq_msg_init(&rid);
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_from(p->router, &rid, &m, 0), BP_EPROTO);
    assert_int_equal(bp_recv_from(p->router, &rid, &m, 0), BP_OK);
    assert_memory_equal(zmq_msg_data(&rid), "board-1", 7);
    assert_int_equal(zmq_msg_size(&m), 2);
    assert_memory_equal(zmq_msg_data(&m), "ok", 2);
    zmq_msg_close(&rid);
    zmq_msg_close(&m);
}

static void t_open_errors(void **state)
{
    struct pair *p = *state;
    char err[256];
    struct bp_sockcfg c = {0};
    assert_null(bp_sock_open(p->ctx, ZMQ_PULL, "nonsense", 1, &c, err, sizeof err));
    assert_non_null(strstr(err, "cannot bind nonsense"));
    assert_null(bp_sock_open(p->ctx, ZMQ_PULL, "bogus://x:1", 1, &c, err, sizeof err));
    assert_non_null(strstr(err, "unsupported transport"));
    /* The pair's own port is taken. */
    assert_null(bp_sock_open(p->ctx, ZMQ_PULL, p->ep, 1, &c, err, sizeof err));
    assert_non_null(strstr(err, "cannot bind"));
    /* A failed attach closes the socket and clears the handle. */
    void *s = bp_sock_new(p->ctx, ZMQ_PULL, &c, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(bp_sock_attach(&s, p->ep, 1, err, sizeof err), BP_EZMQ);
    assert_null(s);
}

/* bp_sock_close clears the handle and tolerates NULL and repeats. */
static void t_close_clears_handle(void **state)
{
    struct pair *p = *state;
    assert_non_null(p->push);
    bp_sock_close(&p->push);
    assert_null(p->push);
    bp_sock_close(&p->push);
    assert_null(p->push);
    bp_sock_close(NULL);
    /* The other end still works on its own. */
    assert_non_null(p->pull);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv_raw(p->pull, &m, ZMQ_DONTWAIT), BP_ETIMEDOUT);
    zmq_msg_close(&m);
}

/* Host sockets bound a peer's time on a descriptor as far as libzmq can:
 * the ZMTP handshake (10 s) and, once done, ZMTP pings (every 10 s, the
 * peer dropped 60 s after one it did not answer). Workers set none. */
static void t_host_peer_limits(void **state)
{
    struct pair *p = *state;
    struct bp_opts o;
    memset(&o, 0, sizeof o);
    o.max_msg = 4096;
    o.role = BP_ROLE_SINK;
    struct bp_sockcfg c = bp_role_sockcfg(&o);
    assert_int_equal(c.handshake_ms, 10000);
    assert_int_equal(c.ping_ms, 10000);
    assert_int_equal(c.ping_timeout_ms, 60000);
    o.role = BP_ROLE_VENTILATOR;
    assert_int_equal(bp_role_sockcfg(&o).ping_ms, 10000);
    o.role = BP_ROLE_WORKER;
    c = bp_role_sockcfg(&o);
    assert_int_equal(c.handshake_ms + c.ping_ms + c.ping_timeout_ms, 0);

    /* Applied: the options read back. */
    char err[256];
    struct bp_sockcfg hc = {
        .linger_ms = 0, .handshake_ms = 1500, .ping_ms = 100, .ping_timeout_ms = 300};
    p->router = bp_sock_open(p->ctx, ZMQ_ROUTER, "tcp://127.0.0.1:*", 1, &hc, err, sizeof err);
    assert_non_null(p->router);
    int v = 0;
    size_t n = sizeof v;
    assert_int_equal(zmq_getsockopt(p->router, ZMQ_HANDSHAKE_IVL, &v, &n), 0);
    assert_int_equal(v, 1500);
    assert_int_equal(zmq_getsockopt(p->router, ZMQ_HEARTBEAT_IVL, &v, &n), 0);
    assert_int_equal(v, 100);
    assert_int_equal(zmq_getsockopt(p->router, ZMQ_HEARTBEAT_TIMEOUT, &v, &n), 0);
    assert_int_equal(v, 300);

    /* A hand-made peer that completes the handshake as a DEALER and then
     * never answers a ping is dropped (without pings it would stay). */
    char ep[BP_ENDPOINT_MAX];
    assert_int_equal(bp_sock_endpoint(p->router, ep, sizeof ep), BP_OK);
    const char *colon = strrchr(ep, ':');
    assert_non_null(colon);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    unsigned port = 0;
    assert_int_equal(sscanf(colon + 1, "%u", &port), 1);
    a.sin_port = htons((uint16_t)port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    /* ZMTP 3.0 greeting (NULL mechanism), then READY as a DEALER. */
    static const unsigned char hello[] =
        "\xff\x00\x00\x00\x00\x00\x00\x00\x00\x7f\x03\x00\x4e\x55\x4c\x4c"
        "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        "\x04\x1c\x05\x52\x45\x41\x44\x59\x0b\x53\x6f\x63\x6b\x65\x74\x2d"
        "\x54\x79\x70\x65\x00\x00\x00\x06\x44\x45\x41\x4c\x45\x52";
    assert_int_equal(send(s, hello, sizeof hello - 1, 0), (ssize_t)(sizeof hello - 1));
    char buf[256];
    ssize_t got = 1;
    while (got > 0) {
        struct pollfd pf = {.fd = s, .events = POLLIN};
        assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
        got = recv(s, buf, sizeof buf, 0); /* greeting, READY, PINGs: unanswered */
    }
    assert_true(got == 0 || errno == ECONNRESET);
    close(s);
}

/* Each test gets its own context and sockets, set up and checked around
 * it. */
#define SOCK_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SOCK_TEST(t_roundtrip_over_tcp), SOCK_TEST(t_extra_frames_are_consumed),
        SOCK_TEST(t_nothing_waiting),    SOCK_TEST(t_readable_writable),
        SOCK_TEST(t_router_roundtrip),   SOCK_TEST(t_recv_from_extra_frames),
        SOCK_TEST(t_open_errors),        SOCK_TEST(t_close_clears_handle),
        SOCK_TEST(t_host_peer_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
