/* Fuzz target: the wire decoder (bp_msg_decode) and the record iterators
 * on what it accepts. Every network peer's message goes through these
 * first: no input may crash them, read out of bounds (ASan) or make an
 * iterator disagree with the decoder's count. */
#include <string.h>

#include "bp_frame.h"
#include "fuzz.h"

static volatile unsigned sink_byte; /* keeps the reads from being optimised out */

static void touch(const uint8_t *p, size_t n)
{
    unsigned x = 0;
    for (size_t i = 0; i < n; i++)
        x += p[i];
    sink_byte += x;
}

static void walk(const struct bp_msg *m)
{
    size_t off = 0;
    uint32_t n = 0;
    switch (m->type) {
    case BP_MSG_TASKS: {
        struct bp_task_rec t;
        while (bp_msg_next_task(m, &off, &t) && ++n)
            touch(t.data, t.len);
        break;
    }
    case BP_MSG_RESULTS: {
        struct bp_result_rec r;
        uint8_t wl;
        const char *w = bp_msg_wid(m, &wl);
        touch((const uint8_t *)w, wl);
        while (bp_msg_next_result(m, &off, &r) && ++n) {
            touch(r.data, r.len);
            touch(r.head, r.head_len);
            if (r.status > BP_ST_MAX || r.head_len > BP_INFO_HEAD_MAX)
                __builtin_trap();
            (void)bp_status_name(r.status);
        }
        break;
    }
    case BP_MSG_ACK: {
        struct bp_ack_rec a;
        while (bp_msg_next_ack(m, &off, &a) && ++n)
            if (a.kind > BP_ACK_RETRY)
                __builtin_trap();
        break;
    }
    case BP_MSG_CREDIT:
    case BP_MSG_BYE: {
        uint64_t id;
        off = 0;
        while (bp_msg_next_id(m, &off, &id))
            n++;
        (void)bp_msg_u32(m);
        break;
    }
    case BP_MSG_HELLO: {
        struct bp_hello h;
        bp_msg_hello(m, &h);
        touch((const uint8_t *)h.id, h.id_len);
        return;
    }
    default:
        return;
    }
    if (n != m->n) /* the decoder counted what the iterators walk */
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t limits[] = {0, 64, 1u << 20};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct bp_msg m;
        if (bp_msg_decode(&m, data, size, limits[i]) == BP_OK)
            walk(&m);
    }
    return 0;
}

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
    struct bp_pack p;
    bp_pack_init(&p);
    const uint64_t batch = 0x1122334455667788ull;
    switch (i) {
    case 0:
        bp_pack_begin(&p, BP_MSG_HELLO, 0);
        bp_pack_u16(&p, 2);
        bp_pack_u16(&p, 0);
        bp_pack_u32(&p, 8);
        bp_pack_u8(&p, 3);
        bp_pack_bytes(&p, "pi0", 3);
        break;
    case 1:
        bp_pack_begin(&p, BP_MSG_CREDIT, batch);
        bp_pack_u32(&p, 4);
        bp_pack_id(&p, 1);
        bp_pack_id(&p, 2);
        break;
    case 2:
        bp_pack_begin(&p, BP_MSG_TASKS, batch);
        bp_pack_task(&p, 7, 1, BP_TF_LAST_TRY, "hello", 5);
        bp_pack_task(&p, 8, 2, 0, "", 0);
        break;
    case 3:
        bp_pack_begin(&p, BP_MSG_HEARTBEAT, batch);
        bp_pack_u64(&p, 12345);
        bp_pack_u64(&p, 0);
        break;
    case 4:
        bp_pack_begin(&p, BP_MSG_RESULTS, batch);
        bp_pack_u8(&p, 2);
        bp_pack_bytes(&p, "w1", 2);
        {
            struct bp_result_rec r = {.id = 7,
                                      .attempt = 1,
                                      .status = BP_ST_OK,
                                      .flags = BP_RF_FINAL,
                                      .data = (const uint8_t *)"HELLO",
                                      .len = 5};
            bp_pack_result(&p, &r);
            struct bp_result_rec x = {.id = 8,
                                      .attempt = 1,
                                      .status = BP_ST_FAILED,
                                      .flags = BP_RF_FINAL | BP_RF_INFO,
                                      .code = 3,
                                      .data = (const uint8_t *)"boom",
                                      .len = 4,
                                      .task_len = 9,
                                      .start_ms = 1,
                                      .head = (const uint8_t *)"the task",
                                      .head_len = 8};
            bp_pack_result(&p, &x);
        }
        break;
    case 5:
        bp_pack_begin(&p, BP_MSG_ACK, batch);
        bp_pack_ack(&p, 7, 1, BP_ACK_OK);
        bp_pack_ack(&p, 8, 1, BP_ACK_RETRY);
        break;
    case 6:
        bp_pack_begin(&p, BP_MSG_BYE, batch);
        bp_pack_u32(&p, BP_BYE_GONE);
        bp_pack_id(&p, 9);
        break;
    case 7:
        bp_pack_begin(&p, BP_MSG_CLOSE, batch);
        bp_pack_u64(&p, 100);
        break;
    case 8:
        bp_pack_begin(&p, BP_MSG_END, batch);
        bp_pack_u32(&p, BP_END_COMPLETE);
        break;
    case 9:
        bp_pack_begin(&p, BP_MSG_COMPLETE, batch);
        bp_pack_u64(&p, 99);
        bp_pack_u64(&p, 1);
        break;
    case 10:
        bp_pack_begin(&p, BP_MSG_BEGIN, batch);
        break;
    default:
        bp_pack_free(&p);
        return 0;
    }
    size_t n = 0;
    if (bp_pack_finish(&p) == BP_OK && p.len <= cap) {
        memcpy(buf, p.p, p.len);
        n = p.len;
    }
    bp_pack_free(&p);
    return n;
}
