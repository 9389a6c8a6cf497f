/* bp_sock: socket set-up and two-frame messages through a real libzmq
 * PUSH/PULL pair over tcp loopback (under qemu in cross builds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bp_sock.h"

struct pair {
    void *ctx, *pull, *push;
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
    int tmo = 60000; /* generous: qemu on a busy CI machine */
    zmq_setsockopt(p.pull, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    *state = &p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    bp_sock_close(&p->push);
    bp_sock_close(&p->pull);
    assert_null(p->push);
    zmq_ctx_term(p->ctx);
    return 0;
}

static void t_roundtrip_over_tcp(void **state)
{
    struct pair *p = *state;
    struct bp_hdr h = {.type = BP_MSG_RESULT,
                       .status = BP_ST_FAILED,
                       .batch = 0x1122334455667788u,
                       .task = 42,
                       .code = 3,
                       .aux = 17};
    bp_hdr_set_wid(&h, "board-1");
    assert_int_equal(bp_send(p->push, &h, "payload", 7, 0), BP_OK);
    struct bp_hdr g;
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv(p->pull, &g, &m, 0), BP_OK);
    assert_int_equal(g.type, BP_MSG_RESULT);
    assert_int_equal(g.status, BP_ST_FAILED);
    assert_true(g.batch == 0x1122334455667788u);
    assert_int_equal(g.task, 42);
    assert_int_equal(g.code, 3);
    assert_int_equal(g.aux, 17);
    assert_string_equal(g.wid, "board-1");
    assert_int_equal(zmq_msg_size(&m), 7);
    assert_memory_equal(zmq_msg_data(&m), "payload", 7);
    zmq_msg_close(&m);
}

static void t_raw_frame_is_not_a_message(void **state)
{
    struct pair *p = *state;
    assert_int_equal(bp_send_raw(p->push, "hola", 4, 0), BP_OK);
    struct bp_hdr g;
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv(p->pull, &g, &m, 0), BP_EPROTO);
    /* ...and the socket still works afterwards. */
    struct bp_hdr h = {.type = BP_MSG_TASK, .task = 1};
    assert_int_equal(bp_send(p->push, &h, "x", 1, 0), BP_OK);
    assert_int_equal(bp_recv(p->pull, &g, &m, 0), BP_OK);
    assert_int_equal(g.task, 1);
    assert_int_equal(bp_send_raw(p->push, "aloha", 5, 0), BP_OK);
    assert_int_equal(bp_recv_raw(p->pull, &m, 0), BP_OK);
    assert_memory_equal(zmq_msg_data(&m), "aloha", 5);
    zmq_msg_close(&m);
}

static void t_extra_frames_are_consumed(void **state)
{
    struct pair *p = *state;
    uint8_t hb[BP_HDR_MAX];
    size_t hn;
    struct bp_hdr h = {.type = BP_MSG_TASK, .task = 5};
    assert_int_equal(bp_hdr_encode(&h, hb, sizeof hb, &hn), BP_OK);
    assert_true(zmq_send(p->push, hb, hn, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(p->push, "a", 1, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(p->push, "b", 1, 0) >= 0);
    assert_true(zmq_send(p->push, hb, hn, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(p->push, "ok", 2, 0) >= 0);
    struct bp_hdr g;
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv(p->pull, &g, &m, 0), BP_EPROTO);
    assert_int_equal(bp_recv(p->pull, &g, &m, 0), BP_OK);
    assert_memory_equal(zmq_msg_data(&m), "ok", 2);
    zmq_msg_close(&m);
}

static void t_zero_copy_send(void **state)
{
    struct pair *p = *state;
    zmq_msg_t out, in;
    struct bp_hdr h = {.type = BP_MSG_RESULT, .task = 9};
    assert_int_equal(zmq_msg_init_size(&out, 3), 0);
    memcpy(zmq_msg_data(&out), "abc", 3);
    assert_int_equal(bp_send_msg(p->push, &h, &out, 0), BP_OK);
    assert_int_equal(zmq_msg_size(&out), 0); /* moved into the socket */
    struct bp_hdr g;
    zmq_msg_init(&in);
    assert_int_equal(bp_recv(p->pull, &g, &in, 0), BP_OK);
    assert_int_equal(g.task, 9);
    assert_memory_equal(zmq_msg_data(&in), "abc", 3);
    /* Without a header: one raw frame. */
    assert_int_equal(zmq_msg_init_size(&out, 2), 0);
    memcpy(zmq_msg_data(&out), "xy", 2);
    assert_int_equal(bp_send_msg(p->push, NULL, &out, 0), BP_OK);
    assert_int_equal(bp_recv_raw(p->pull, &in, 0), BP_OK);
    assert_memory_equal(zmq_msg_data(&in), "xy", 2);
    zmq_msg_close(&out);
    zmq_msg_close(&in);
}

static void t_nothing_waiting(void **state)
{
    struct pair *p = *state;
    struct bp_hdr g;
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_recv(p->pull, &g, &m, ZMQ_DONTWAIT), BP_ETIMEDOUT);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_roundtrip_over_tcp),
        cmocka_unit_test(t_raw_frame_is_not_a_message),
        cmocka_unit_test(t_extra_frames_are_consumed),
        cmocka_unit_test(t_zero_copy_send),
        cmocka_unit_test(t_nothing_waiting),
        cmocka_unit_test(t_open_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
