/* Fuzz target: the option parser (bp_opts_parse) on any command line and
 * environment. Input: byte 0 picks the role; the rest is NUL-separated
 * words, those holding '=' going to the environment, the others to argv.
 * Every outcome is ok, --help/--version or one line saying what is wrong;
 * an accepted set of options is within its documented ranges. */
#include <stdlib.h>
#include <string.h>

#include "bp.h"
#include "fuzz.h"

#define MAX_WORDS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    enum bp_role role = (enum bp_role)(data[0] % 3);
    static char copy[4097];
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    char *argv[MAX_WORDS + 2], *envp[MAX_WORDS + 1];
    int argc = 0, envc = 0;
    argv[argc++] = "fuzz";
    for (char *p = copy; p < copy + size - 1 && argc <= MAX_WORDS && envc < MAX_WORDS;
         p += strlen(p) + 1) {
        if (strchr(p, '=') && !strncmp(p, "BP_", 3))
            envp[envc++] = p;
        else
            argv[argc++] = p;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    struct bp_opts o;
    int want_version = 0;
    int rc = bp_opts_parse(&o, role, argc, argv, envp, &want_version);
    if (rc == BP_EXIT_INFO)
        return 0;
    if (rc == BP_EUSAGE) {
        if (!o.err[0] || strchr(o.err, '\n'))
            abort();
        return 0;
    }
    if (rc != BP_OK)
        abort();
    if (o.keygen)
        return 0; /* nothing else is used */
    if (o.max_msg < 64 || o.max_msg > ((int64_t)1 << 31) || o.hb_ms < 10 || o.liveness < 1 ||
        o.max_attempts < 1 || o.prefetch < -1 || o.sync_ms < 0 || o.linger_ms < 0)
        abort();
    if (!o.curve_secret != !(role == BP_ROLE_WORKER ? o.curve_server : o.curve_allow))
        abort();
    switch (role) {
    case BP_ROLE_WORKER:
        if (o.jobs < 1 || o.jobs > 1024 || !o.tasks || !o.results || !o.id[0] ||
            strlen(o.id) > BP_ID_MAX)
            abort();
        break;
    default:
        if (!o.bind)
            abort();
        break;
    }
    return 0;
}

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
    static const char s0[] =
        "\x01--jobs\0004\0--exec\0tr a-z A-Z\0--once\0--heartbeat\000250ms\0--id\0b1";
    static const char s1[] = "\x00--wait-workers\0003\0--halt\0soon,fail=10%\0--resume\0tasks.txt";
    static const char s2[] =
        "\x02--ordered\0-o\0out.txt\0--curve-secret\0h.key_secret\0--curve-allow\0boards";
    static const char s3[] =
        "\x01BP_CURVE_SECRET=b.key_secret\0BP_CURVE_SERVER=h.key\0BP_JOBS=0\0--max-msg-size\0"
        "64K";
    static const char s4[] = "\x00--keygen\0host";
    static const struct {
        const char *p;
        size_t n;
    } seeds[] = {{s0, sizeof s0 - 1},
                 {s1, sizeof s1 - 1},
                 {s2, sizeof s2 - 1},
                 {s3, sizeof s3 - 1},
                 {s4, sizeof s4 - 1}};
    if (i < 0 || i >= (int)(sizeof seeds / sizeof seeds[0]) || seeds[i].n > cap)
        return 0;
    memcpy(buf, seeds[i].p, seeds[i].n);
    return seeds[i].n;
}
