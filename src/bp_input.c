#include <stdlib.h>
#include <string.h>

#include "bp.h"
#include "bp_input.h"

const char *const bp_tutorial_tasks[7] = {
    "hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias", "bienvenido",
};

int bp_reader_init(struct bp_reader *r, FILE *f, int nul, size_t max)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->nul = nul;
    r->max = max;
    r->cap = max < 4096 ? max + 1 : 4096;
    r->buf = malloc(r->cap);
    return r->buf ? BP_OK : BP_ENOMEM;
}

void bp_reader_free(struct bp_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

int bp_reader_next(struct bp_reader *r, const char **rec, size_t *len)
{
    if (!r->f) {
        if (r->builtin >= sizeof bp_tutorial_tasks / sizeof bp_tutorial_tasks[0])
            return BP_EXIT_INFO;
        *rec = bp_tutorial_tasks[r->builtin++];
        *len = strlen(*rec);
        r->record++;
        return BP_OK;
    }
    int delim = r->nul ? '\0' : '\n';
    for (;;) {
        size_t n = 0;
        int too_big = 0, c = EOF, any = 0;
        /* Byte by byte into a bounded buffer: a huge record costs at most
         * max bytes of memory, unlike getdelim(). */
        while ((c = getc_unlocked(r->f)) != EOF) {
            any = 1;
            if (c == delim)
                break;
            if (n >= r->max) {
                too_big = 1;
                continue;
            }
            if (n + 1 >= r->cap) {
                size_t cap = r->cap * 2 > r->max + 1 ? r->max + 1 : r->cap * 2;
                char *p = realloc(r->buf, cap);
                if (!p)
                    return BP_ENOMEM;
                r->buf = p;
                r->cap = cap;
            }
            r->buf[n++] = (char)c;
        }
        if (c == EOF && ferror(r->f))
            return BP_EIO;
        if (!any)
            return BP_EXIT_INFO;
        r->record++;
        if (too_big)
            return BP_ETOOBIG;
        if (!r->nul && n && r->buf[n - 1] == '\r')
            n--;
        if (!r->nul && n == 0) {
            if (c == EOF)
                return BP_EXIT_INFO;
            continue;
        }
        r->buf[n] = '\0';
        *rec = r->buf;
        *len = n;
        return BP_OK;
    }
}
