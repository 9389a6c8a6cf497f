"""boardpipe's wire format v2 built by hand for the tests
(docs/wire-format.md): one frame, a 16-byte header, then the body."""
import struct

HELLO, CREDIT, TASKS, HEARTBEAT, RESYNC, END, BYE, RESULTS, BEGIN, CLOSE, ACK, COMPLETE, \
    EXTENT = range(1, 14)


def msg(typ, batch=0, n=0, body=b"", version=3):
    return struct.pack(">2sBBIQ", b"bp", version, typ, n, batch) + body


def results(batch, recs, wid=b"py"):
    """recs: (id, status, final, payload)."""
    body = bytes([len(wid)]) + wid
    for tid, status, final, data in recs:
        body += struct.pack(">QHBBiII", tid, 1, status, 1 if final else 0, 0, 0, len(data)) + data
    return msg(RESULTS, batch, len(recs), body)
