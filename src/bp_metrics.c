/* Writes a --metrics-file as Prometheus text (bp_metrics.h), through a
 * temporary file renamed over the old one. Owns no state; must not gather
 * the numbers (the roles pass them) or log. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bp.h"
#include "bp_metrics.h"

/* A label value as the text format wants it: \\, \" and \n escaped; other
 * control bytes (peer- or user-chosen ids) dropped. */
static void put_label(FILE *f, const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p >= 0x20 && *p != 0x7f)
            fputc(*p, f);
    }
}

int bp_metrics_write(const char *path, const char *label_name, const char *label_value,
                     const struct bp_metric *m, size_t n, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "metrics file name too long");
        return BP_EIO;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return BP_EIO;
    }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s", m[i].name, m[i].help, m[i].name,
                m[i].type == BP_COUNTER ? "counter" : "gauge", m[i].name);
        if (label_name) {
            fprintf(f, "{%s=\"", label_name);
            put_label(f, label_value ? label_value : "");
            fputs("\"}", f);
        }
        /* %.17g round-trips a double; counts print as plain integers. */
        fprintf(f, " %.17g\n", m[i].value);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return BP_EIO;
    }
    return BP_OK;
}
