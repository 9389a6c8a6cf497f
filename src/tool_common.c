/* main() of the three tools (tool_common.h): options, --help/--version,
 * --keygen, the signals that stop or reload a run, and the exit status.
 * Must not hold role logic: that is the library's (bp_*). */
#include <signal.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "bp_fd.h"
#include "bp_internal.h"
#include "tool_common.h"

/* libzmq's listeners accept with accept4(), or accept() where its build
 * found no accept4 (ours for musl: a cross build's check). These two
 * definitions take the C library's place in the tools (ahead of libc.a in
 * a static link; found first by the dynamic linker, ahead of libc.so, in a
 * dynamic one, which is the only way to reach Debian's libzmq). libzmq
 * 4.3.4 answers EMFILE by returning to epoll with the connection still
 * waiting (tcp_listener.cpp: "TODO: Handle specific errors like
 * ENFILE/EMFILE"), so a host out of descriptors spun a core;
 * bp_fd_accept() refuses the waiting connection instead (see bp_fd.h).
 * Same signatures as <sys/socket.h>'s, which this file does not include
 * (glibc declares them with a transparent union). */
struct sockaddr;
int accept4(int fd, struct sockaddr *addr, unsigned int *addrlen, int flags);
int accept4(int fd, struct sockaddr *addr, unsigned int *addrlen, int flags)
{
    return bp_fd_accept(fd, addr, addrlen, flags);
}
int accept(int fd, struct sockaddr *addr, unsigned int *addrlen);
int accept(int fd, struct sockaddr *addr, unsigned int *addrlen)
{
    return bp_fd_accept(fd, addr, addrlen, 0);
}

#ifdef BP_NO_CXA_DEMANGLE
/* Static builds with zig's libc++ (set in CMakeLists.txt): libc++abi's
 * default terminate handler demangles the type of an uncaught exception for
 * its last message, and that alone links its whole C++ demangler (about
 * 110-135 KB of a stripped tool). This definition, with the C signature of
 * <cxxabi.h>, keeps the archive's demangler out of the link; should an
 * exception ever escape libzmq (std::bad_alloc), the process still ends
 * with the same message, only with the mangled type name ("St9bad_alloc").
 * Status -2: "not a valid mangled name". Not for dynamic links, where it
 * would replace the C++ runtime's own demangler for the whole process. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status)
{
    (void)mangled;
    (void)buf;
    (void)len;
    if (status)
        *status = -2;
    return NULL;
}
#endif

#ifdef BP_NO_CXA_DEMANGLE
/* Static builds link our own libsodium (minimal), whose sodium_init() asks
 * every primitive it has for its fastest code. Two of those pickers are
 * all that reference Argon2 (password hashing) and BLAKE2b with their SIMD
 * variants, about 50 KB of a stripped tool that boardpipe never runs:
 * CURVE needs curve25519, xsalsa20, poly1305 and randombytes (chacha20),
 * whose pickers stay. These no-op pickers keep the two out of the link
 * (the reference code is the default anyway). */
int _crypto_pwhash_argon2_pick_best_implementation(void);
int _crypto_pwhash_argon2_pick_best_implementation(void)
{
    return 0;
}

int _crypto_generichash_blake2b_pick_best_implementation(void);
int _crypto_generichash_blake2b_pick_best_implementation(void)
{
    return 0;
}
#endif

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t reload_flag;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_flag = 1;
    else
        stop_flag = 1;
}

int tool_main(enum bp_role role, tool_run_fn run, tool_usage_fn usage, const char *prog, int argc,
              char *argv[])
{
    struct bp_opts o;
    int want_version = 0;
    int rc = bp_opts_parse(&o, role, argc, argv, NULL, &want_version);
    if (rc == BP_EXIT_INFO) {
        char buf[512];
        if (want_version && bp_version_format(buf, sizeof buf, prog) > 0)
            fputs(buf, stdout);
        else if (!want_version)
            fputs(usage(), stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (rc != BP_OK) {
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", prog, o.err, prog);
        return bp_exit_code(rc);
    }
    bp_log_init(prog, o.log_level);
    /* Every peer costs a descriptor: take what the hard limit allows. */
    uint64_t soft = 0, hard = 0;
    if (bp_nofile_raise(&soft, &hard) != BP_OK)
        bp_log(BP_LOG_WARN, "cannot raise the descriptor limit to %llu: staying at %llu",
               (unsigned long long)hard, (unsigned long long)soft);
    else
        bp_log(BP_LOG_DEBUG, "descriptor limit %llu (hard %llu)", (unsigned long long)soft,
               (unsigned long long)hard);
    if (o.keygen) {
        char err[320];
        rc = bp_keygen(o.keygen, err, sizeof err);
        if (rc != BP_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return bp_exit_code(rc);
        }
        printf("%s.key         public: give it to the other side\n"
               "%s.key_secret  secret: stays here (mode 600)\n",
               o.keygen, o.keygen);
        return fflush(stdout) == 0 ? 0 : 1;
    }

    /* No SA_RESTART: a signal interrupts zmq_poll() so the loop sees it. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Host roles reload their CURVE allowlist on SIGHUP (like sshd); a
     * worker keeps the default (a hang-up ends it). */
    if (role != BP_ROLE_WORKER)
        sigaction(SIGHUP, &sa, NULL);

    struct bp_io io = {.stop = &stop_flag, .reload = &reload_flag};
    struct bp_report rep;
    rc = run(&o, &io, &rep);
    /* Asked to stop, and stopped cleanly: not an error. */
    if (rc == BP_EINTR)
        rc = BP_OK;
    return bp_exit_code(rc);
}
