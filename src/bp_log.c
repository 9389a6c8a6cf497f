/* Logging to stderr, the clocks, printable quoting and the error names
 * and exit codes (bp_internal.h, bp.h). Owns the log level and program
 * name; must not allocate or use another module. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bp_internal.h"

static const char *log_prog = "boardpipe";
static int log_level = BP_LOG_INFO;

void bp_log_init(const char *prog, int level)
{
    if (prog)
        log_prog = prog;
    log_level = level;
}

int bp_log_enabled(int level)
{
    return level <= log_level;
}

const char *bp_log_prog(void)
{
    return log_prog;
}

void bp_log(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* One write per line: lines from several processes sharing a terminal
     * or log file do not interleave mid-line. */
    fprintf(stderr, "%s: %s\n", log_prog, line);
}

int64_t bp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bp_printable(char *buf, size_t len, const void *s, size_t max)
{
    const unsigned char *p = s;
    size_t o = 0;
    if (len == 0)
        return;
    for (size_t i = 0; i < max && o + 5 < len; i++) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
        }
    }
    buf[o] = '\0';
}

static const char *const err_text[] = {
    [BP_OK] = "ok",
    [BP_EUSAGE] = "usage error",
    [BP_ENOMEM] = "out of memory",
    [BP_EIO] = "I/O error",
    [BP_EZMQ] = "ZeroMQ error",
    [BP_ETIMEDOUT] = "timed out",
    [BP_EPROTO] = "malformed message",
    [BP_EVERSION] = "unsupported protocol version",
    [BP_ETOOBIG] = "too big",
    [BP_EINTR] = "interrupted",
    [BP_EFAILED] = "some tasks failed",
    [BP_EINCOMPLETE] = "tasks missing",
    [BP_EHALTED] = "halted (--halt)",
    [BP_EXIT_INFO] = "ok",
};

const char *bp_strerror(int err)
{
    if (err < 0 || (size_t)err >= sizeof err_text / sizeof err_text[0] || !err_text[err])
        return "unknown error";
    return err_text[err];
}

int bp_exit_code(int err)
{
    switch (err) {
    case BP_OK:
    case BP_EXIT_INFO:
        return 0;
    case BP_EUSAGE:
        return 2;
    case BP_EFAILED:
        return 3;
    case BP_EINCOMPLETE:
        return 4;
    case BP_EHALTED:
        return 5;
    case BP_EINTR:
        return 130;
    default:
        return 1;
    }
}
