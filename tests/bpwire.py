"""boardpipe's wire format v3 built by hand for the tests
(docs/wire-format.md): one frame, a 16-byte header, then the body."""
import struct

HELLO, CREDIT, TASKS, HEARTBEAT, RESYNC, END, BYE, RESULTS, BEGIN, CLOSE, ACK, COMPLETE, \
    EXTENT, FETCH, CHUNK, BASE, PUT, PUTACK, CANCEL = range(1, 20)
TF_LAST_TRY, TF_FILE = 1, 2
RF_FINAL, RF_INFO, RF_FILES = 1, 2, 4
FK_TASK, FK_BASE = 0, 1
CK_DATA, CK_CHANGED, CK_ERROR, CK_REFUSED = range(4)
CHUNK_BYTES = 64 * 1024


def msg(typ, batch=0, n=0, body=b"", version=3):
    return struct.pack(">2sBBIQ", b"bp", version, typ, n, batch) + body


def results(batch, recs, wid=b"py"):
    """recs: (id, status, final, payload)."""
    body = bytes([len(wid)]) + wid
    for tid, status, final, data in recs:
        body += struct.pack(">QHBBiII", tid, 1, status, 1 if final else 0, 0, 0, len(data)) + data
    return msg(RESULTS, batch, len(recs), body)


def hello(wid, jobs=1, credit=1):
    return msg(HELLO, 0, 0, struct.pack(">HHIB", jobs, 0, credit, len(wid)) + wid)


def tasks_of(frame):
    """[(id, attempt, flags, payload)] of a TASKS frame."""
    n = struct.unpack(">I", frame[4:8])[0]
    off, out = 16, []
    for _ in range(n):
        tid, att, fl, _z, ln = struct.unpack(">QHBBI", frame[off:off + 16])
        out.append((tid, att, fl, frame[off + 16:off + 16 + ln]))
        off += 16 + ln
    return out


def file_desc(payload):
    """(size, mtime_ns, name, host path) of a FILE task's payload."""
    size, mtime, nl = struct.unpack(">QQH", payload[:18])
    return size, mtime, payload[18:18 + nl], payload[18 + nl:]


def fetch(batch, reqs, got=0):
    """reqs: (id, attempt, kind, len, offset)."""
    body = struct.pack(">I", got)
    for tid, att, kind, ln, off in reqs:
        body += struct.pack(">QHBBIQ", tid, att, kind, 0, ln, off)
    return msg(FETCH, batch, len(reqs), body)


def chunk_of(frame):
    """(id, attempt, kind, status, code, offset, data) of a CHUNK frame."""
    tid, att, kind, st, code, off = struct.unpack(">QHBBIQ", frame[16:40])
    return tid, att, kind, st, code, off, frame[40:]


def bases_of(frame):
    """[(sha256, size, name)] of a BASE frame."""
    n = struct.unpack(">I", frame[4:8])[0]
    off, out = 16, []
    for _ in range(n):
        sha, size, nl = frame[off:off + 32], *struct.unpack(">QH", frame[off + 32:off + 42])
        out.append((sha, size, frame[off + 42:off + 42 + nl]))
        off += 42 + nl
    return out


def put(batch, tid, att, idx, offset, size, name, data):
    return msg(PUT, batch, 0, struct.pack(">QHBBQQH", tid, att, idx, 0, offset, size, len(name))
               + name + data)


def putacks_of(frame):
    """[(id, attempt, idx, status, code, received)] of a PUTACK frame."""
    n = struct.unpack(">I", frame[4:8])[0]
    return [struct.unpack(">QHBBIQ", frame[16 + 24 * i:40 + 24 * i]) for i in range(n)]
