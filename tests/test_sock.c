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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
