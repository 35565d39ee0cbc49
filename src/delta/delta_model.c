/* lb_model_apply_delta: patches a freshly loaded model (before lb_model_bind) with a delta file.
 * The delta names the tensors as the base file stores them; the model's table may rename them
 * (HF -> GGUF names), so each file tensor is matched to the model tensor that points at the
 * same bytes of the same mapping. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/model.h"
#include "delta/deltafile.h"


static lb_tensor *by_data(lb_model *m, const void *data) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].data == data) return &m->tensors[i];
    return NULL;
}

lb_status lb_model_apply_delta(lb_model *m, const char *delta_path, lb_error *err) {
    if (m->n_maps != 1)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: --delta needs a model stored in one file (this one has %zu)", m->path,
                       m->n_maps);
    lb_delta *d;
    lb_status s = lb_delta_open(delta_path, &d, err);
    if (s) return s;
    lb_tsrc *b = NULL;
    const lb_mapfile *mf = &m->maps[0];
    s = lb_tsrc_parse(mf->data, mf->size, mf->path, &b, err);
    if (!s && strcmp(d->base_format, b->kind == 'g' ? "gguf" : "safetensors") != 0)
        s = lb_fail(err, LB_ERR_MISMATCH, "%s: the delta was made for a %s base, this is not one", m->path, d->base_format);
    if (!s) s = lb_delta_match_base(d, b, err);
    for (size_t i = 0; i < b->n && !s; i++) {
        const lb_tsrc_tensor *t = &b->t[i];
        lb_tensor *mt = by_data(m, t->data);
        uint8_t *dst = NULL;
        const lb_delta_entry *e = NULL;
        for (size_t k = 0; k < d->n && !e; k++)
            if (!strcmp(d->e[k].name, t->name)) e = &d->e[k];
        if (e && e->kept && mt) {
            if (!(dst = lb_model_alloc(m, t->nbytes ? t->nbytes : 1, "weights patched by a delta"))) {
                s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
                break;
            }
        }
        /* every tensor is hashed (dst NULL: checked only), so a wrong base is always refused */
        s = lb_delta_stream_tensor(d, t, b, NULL, NULL, NULL, dst, 0, err);
        if (!s && dst) mt->data = dst;
    }
    lb_tsrc_close(b);
    lb_delta_close(d);
    return s;
}
