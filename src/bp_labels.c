/* Board labels and --require (bp_labels.h). Everything from a peer is
 * checked entry by entry; nothing is allocated. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bp_labels.h"

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || n > BP_LABEL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static int valid_value(const char *s, size_t n)
{
    if (n > BP_LABEL_VALUE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int bp_labels_next(const void *p, size_t len, size_t *off, struct bp_label *l)
{
    const char *b = p;
    while (*off < len) {
        const char *e = b + *off;
        const char *nul = memchr(e, '\0', len - *off);
        if (!nul)
            return 0; /* an unterminated tail */
        size_t n = (size_t)(nul - e);
        *off += n + 1;
        const char *eq = memchr(e, '=', n);
        l->name = e;
        l->name_len = eq ? (size_t)(eq - e) : n;
        l->value = eq ? eq + 1 : NULL;
        l->value_len = eq ? n - l->name_len - 1 : 0;
        if (valid_name(l->name, l->name_len) && (!eq || valid_value(l->value, l->value_len)))
            return 1;
    }
    return 0;
}

int bp_labels_find(const void *p, size_t len, const char *name, struct bp_label *l)
{
    size_t off = 0, nl = strlen(name);
    while (bp_labels_next(p, len, &off, l))
        if (l->name_len == nl && !memcmp(l->name, name, nl))
            return 1;
    return 0;
}

int bp_labels_add(uint8_t *buf, size_t cap, size_t *len, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = value ? strlen(value) : 0;
    struct bp_label l;
    if (!valid_name(name, nl) || (value && !valid_value(value, vl)))
        return -1;
    if (bp_labels_find(buf, *len, name, &l))
        return 0; /* (the first one stays: the user's) */
    size_t need = nl + (value ? 1 + vl : 0) + 1;
    if (*len > cap || cap - *len < need)
        return -1;
    memcpy(buf + *len, name, nl);
    size_t at = *len + nl;
    if (value) {
        buf[at++] = '=';
        memcpy(buf + at, value, vl);
        at += vl;
    }
    buf[at++] = '\0';
    *len = at;
    return 0;
}

int bp_labels_add_arg(uint8_t *buf, size_t cap, size_t *len, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return bp_labels_add(buf, cap, len, arg, NULL);
    char name[BP_LABEL_NAME_MAX + 1];
    size_t nl = (size_t)(eq - arg);
    if (nl == 0 || nl > BP_LABEL_NAME_MAX)
        return -1;
    memcpy(name, arg, nl);
    name[nl] = '\0';
    return bp_labels_add(buf, cap, len, name, eq + 1);
}

char *bp_labels_format(const void *p, size_t len, char *out, size_t n)
{
    size_t off = 0, at = 0;
    struct bp_label l;
    if (n)
        out[0] = '\0';
    while (bp_labels_next(p, len, &off, &l) && at < n) {
        int w = l.value
                    ? snprintf(out + at, n - at, "%s%.*s=%.*s", at ? " " : "", (int)l.name_len,
                               l.name, (int)l.value_len, l.value)
                    : snprintf(out + at, n - at, "%s%.*s", at ? " " : "", (int)l.name_len, l.name);
        if (w < 0)
            break;
        at += (size_t)w;
    }
    return out;
}

/* ---- this machine ---- */

/* Whether ROOT/dev has an entry whose name starts with prefix. */
static int dev_has(const char *root, const char *prefix)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/dev", root);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t pl = strlen(prefix);
    int found = 0;
    const struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = !strncmp(e->d_name, prefix, pl);
    closedir(d);
    return found;
}

/* ROOT/proc/device-tree/model (NUL-ended there), made printable; "" when
 * there is none. */
static void read_model(const char *root, char *out, size_t n)
{
    char path[4096];
    out[0] = '\0';
    snprintf(path, sizeof path, "%s/proc/device-tree/model", root);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t k = fread(out, 1, n - 1, f);
    fclose(f);
    out[k] = '\0';
    size_t m = strlen(out);
    while (m && (out[m - 1] == '\n' || out[m - 1] == ' '))
        out[--m] = '\0';
    for (size_t i = 0; i < m; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            out[i] = '?';
}

void bp_labels_detect(uint8_t *buf, size_t cap, size_t *len, const char *root)
{
    char v[BP_LABEL_VALUE_MAX + 1];
    struct utsname u;
    if (!uname(&u))
        (void)bp_labels_add(buf, cap, len, "arch", u.machine);
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(v, sizeof v, "%ld", c);
    if (c > 0)
        (void)bp_labels_add(buf, cap, len, "cores", v);
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    snprintf(v, sizeof v, "%llu", (unsigned long long)pages * (unsigned long long)psize);
    if (pages > 0 && psize > 0)
        (void)bp_labels_add(buf, cap, len, "mem", v);
    read_model(root, v, sizeof v);
    if (v[0])
        (void)bp_labels_add(buf, cap, len, "model", v);
    if (!gethostname(v, sizeof v)) {
        v[sizeof v - 1] = '\0';
        (void)bp_labels_add(buf, cap, len, "hostname", v); /* (refused if not printable) */
    }
    if (dev_has(root, "video"))
        (void)bp_labels_add(buf, cap, len, "camera", NULL);
    if (dev_has(root, "i2c-"))
        (void)bp_labels_add(buf, cap, len, "i2c", NULL);
}

/* ---- --require ---- */

static const struct {
    const char *s;
    int op;
} ops[] = {{"!=", BP_REQ_NE}, {">=", BP_REQ_GE}, {"<=", BP_REQ_LE},
           {"=", BP_REQ_EQ},  {">", BP_REQ_GT},  {"<", BP_REQ_LT}};

/* One term, p[0..tl), into r. Returns 0 or -1 with err set. */
static int parse_term(const char *p, size_t tl, struct bp_req *r, char *err, size_t errlen)
{
    if (r->n == BP_REQ_MAX) {
        snprintf(err, errlen, "more than %d terms", BP_REQ_MAX);
        return -1;
    }
    size_t nl = 0;
    while (nl < tl && name_char((unsigned char)p[nl]))
        nl++;
    struct bp_req_term *t = &r->t[r->n];
    size_t ol = 0;
    t->op = BP_REQ_HAS;
    for (size_t i = 0; nl < tl && i < sizeof ops / sizeof ops[0] && !ol; i++)
        if (tl - nl >= strlen(ops[i].s) && !strncmp(p + nl, ops[i].s, strlen(ops[i].s))) {
            ol = strlen(ops[i].s);
            t->op = ops[i].op;
        }
    size_t vl = tl - nl - ol;
    /* (a value starting like an operator is a typo: a==b, a=>1) */
    int typo = ol && vl && strchr("=<>!", p[nl + ol]);
    if (!valid_name(p, nl) || (nl < tl && !ol) ||
        (ol && (vl == 0 || typo || !valid_value(p + nl + ol, vl)))) {
        snprintf(err, errlen,
                 "'%.*s': expected NAME or NAME OP VALUE (OP: = != >= <= > <; NAME of "
                 "letters, digits, _ . -)",
                 (int)(tl > 64 ? 64 : tl), p);
        return -1;
    }
    memcpy(t->name, p, nl);
    t->name[nl] = '\0';
    memcpy(t->value, p + nl + ol, vl);
    t->value[vl] = '\0';
    r->n++;
    return 0;
}

int bp_req_parse(const char *expr, struct bp_req *r, char *err, size_t errlen)
{
    struct bp_req n;
    memset(&n, 0, sizeof n);
    const char *p = expr ? expr : "";
    for (;;) {
        const char *end = strchr(p, ',');
        size_t tl = end ? (size_t)(end - p) : strlen(p);
        if (parse_term(p, tl, &n, err, errlen))
            return -1;
        if (!end)
            break;
        p = end + 1;
    }
    *r = n;
    return 0;
}

/* A number with an optional K/M/G/T (x 1024 each step). Returns 0 or -1. */
static int number(const char *s, size_t n, double *v)
{
    char tmp[BP_LABEL_VALUE_MAX + 1];
    if (n == 0 || n > BP_LABEL_VALUE_MAX)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double x = strtod(tmp, &end);
    if (end == tmp || errno || x - x != 0) /* (no number, NaN or infinite) */
        return -1;
    if (*end) {
        static const char suf[] = "KMGT";
        const char *k = strchr(suf, toupper((unsigned char)*end));
        if (!k || end[1])
            return -1;
        for (const char *q = suf; q <= k; q++)
            x *= 1024;
    }
    *v = x;
    return 0;
}

static int term_match(const struct bp_req_term *t, const void *p, size_t len)
{
    struct bp_label l;
    if (!bp_labels_find(p, len, t->name, &l))
        return t->op == BP_REQ_NE;
    if (t->op == BP_REQ_HAS)
        return 1;
    const char *v = l.value ? l.value : "";
    size_t tl = strlen(t->value);
    double a, b;
    int num = !number(v, l.value_len, &a) && !number(t->value, tl, &b);
    if (t->op == BP_REQ_EQ || t->op == BP_REQ_NE) {
        int eq = num ? !(a < b || a > b) : l.value_len == tl && !memcmp(v, t->value, tl);
        return t->op == BP_REQ_EQ ? eq : !eq;
    }
    if (!num)
        return 0;
    switch (t->op) {
    case BP_REQ_GE:
        return a >= b;
    case BP_REQ_LE:
        return a <= b;
    case BP_REQ_GT:
        return a > b;
    default:
        return a < b;
    }
}

int bp_req_match(const struct bp_req *r, const void *p, size_t len)
{
    for (int i = 0; i < r->n; i++)
        if (!term_match(&r->t[i], p, len))
            return 0;
    return 1;
}
