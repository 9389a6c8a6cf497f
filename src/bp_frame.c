#include <string.h>

#include "bp_frame.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

int bp_hdr_encode(const struct bp_hdr *h, void *buf, size_t cap, size_t *len)
{
    uint8_t *p = buf;
    if (h->type < 1 || h->type > BP_MSG_TYPE_MAX || h->wid_len > BP_ID_MAX || h->status > BP_ST_MAX)
        return BP_EPROTO;
    size_t n = BP_HDR_FIXED + h->wid_len;
    if (cap < n)
        return BP_ETOOBIG;
    p[0] = 'b';
    p[1] = 'p';
    p[2] = BP_PROTO_VERSION;
    p[3] = h->type;
    p[4] = h->status;
    p[5] = h->flags;
    p[6] = h->wid_len;
    p[7] = 0;
    put64(p + 8, h->batch);
    put64(p + 16, h->task);
    put32(p + 24, (uint32_t)h->code);
    put32(p + 28, h->aux);
    memcpy(p + BP_HDR_FIXED, h->wid, h->wid_len);
    *len = n;
    return BP_OK;
}

int bp_hdr_decode(struct bp_hdr *h, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (len < 3 || p[0] != 'b' || p[1] != 'p')
        return BP_EPROTO;
    /* The version is checked before the length: a future version may have
     * a different header size, and deserves its own error. */
    if (p[2] != BP_PROTO_VERSION)
        return BP_EVERSION;
    if (len < BP_HDR_FIXED)
        return BP_EPROTO;
    uint8_t wl = p[6];
    if (wl > BP_ID_MAX || len != (size_t)BP_HDR_FIXED + wl)
        return BP_EPROTO;
    if (p[3] < 1 || p[3] > BP_MSG_TYPE_MAX || p[4] > BP_ST_MAX)
        return BP_EPROTO;
    h->type = p[3];
    h->status = p[4];
    h->flags = p[5];
    h->wid_len = wl;
    h->batch = get64(p + 8);
    h->task = get64(p + 16);
    h->code = (int32_t)get32(p + 24);
    h->aux = get32(p + 28);
    memcpy(h->wid, p + BP_HDR_FIXED, wl);
    h->wid[wl] = '\0';
    return BP_OK;
}

void bp_hdr_set_wid(struct bp_hdr *h, const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n > BP_ID_MAX)
        n = BP_ID_MAX;
    if (n)
        memcpy(h->wid, id, n);
    h->wid[n] = '\0';
    h->wid_len = (uint8_t)n;
}

const char *bp_status_name(int status)
{
    static const char *const names[] = {"ok",         "failed",   "timeout",    "too-big",
                                        "exec-error", "signaled", "interrupted"};
    if (status < 0 || status > BP_ST_MAX)
        return "unknown";
    return names[status];
}
