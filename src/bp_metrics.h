/* Metrics as a Prometheus text-format file, the way node_exporter's
 * textfile collector reads them (--metrics-file): written whole to a
 * temporary file and renamed over the old one, so a reader never sees
 * half a file. */
#ifndef BP_METRICS_H
#define BP_METRICS_H

#include <stddef.h>

enum bp_metric_type { BP_COUNTER, BP_GAUGE };

struct bp_metric {
    const char *name; /* e.g. boardpipe_worker_tasks_done_total */
    const char *help;
    enum bp_metric_type type;
    double value;
};

/* Writes n metrics to path, each with the one label label_name=label_value
 * (escaped as the format wants; label_name may be NULL for none). Returns
 * BP_OK, or BP_EIO with a one-line reason in err. */
int bp_metrics_write(const char *path, const char *label_name, const char *label_value,
                     const struct bp_metric *m, size_t n, char *err, size_t errlen);

#endif
