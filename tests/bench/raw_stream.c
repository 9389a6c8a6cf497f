/* The plain-copy baseline of scripts/bench-files: one TCP stream of a
 * file's bytes, written to disk on the other side. Not boardpipe code.
 *
 *   raw_stream recv PORT OUTFILE      accept one connection, write all to OUTFILE
 *   raw_stream send HOST PORT FILE    connect, send FILE, close
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int die(const char *what)
{
    perror(what);
    return 1;
}

static int copy(int from, int to)
{
    static char buf[1 << 16];
    for (;;) {
        ssize_t n = read(from, buf, sizeof buf);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(to, buf + off, (size_t)(n - off));
            if (w < 0)
                return -1;
            off += w;
        }
    }
}

static int port_of(const char *s)
{
    char *end;
    long p = strtol(s, &end, 10);
    return *end || p <= 0 || p > 65535 ? -1 : (int)p;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (argc == 4 && !strcmp(argv[1], "recv")) {
        int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1, p = port_of(argv[2]);
        if (ls < 0 || p < 0)
            return die("socket");
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        a.sin_port = htons((uint16_t)p);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1))
            return die("bind");
        int c = accept(ls, NULL, NULL);
        int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (c < 0 || out < 0 || copy(c, out) || close(out))
            return die("recv");
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "send")) {
        int s = socket(AF_INET, SOCK_STREAM, 0), p = port_of(argv[3]);
        int in = open(argv[4], O_RDONLY);
        if (s < 0 || in < 0 || p < 0)
            return die("send");
        a.sin_port = htons((uint16_t)p);
        if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1 ||
            connect(s, (struct sockaddr *)&a, sizeof a) || copy(in, s) || close(s))
            return die("send");
        return 0;
    }
    fprintf(stderr, "usage: raw_stream recv PORT OUT | send HOST PORT FILE\n");
    return 2;
}
