/* Per-model memory accounting and the model's part of a budget plan. Sizes come from the tensor
 * table and the session's tracker; residency of the mmapped file from mincore(). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dl_iterate_phdr */
#endif
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/model.h"
#include "core/threads.h"
#include "engine/session.h"
#include "quant/repack.h"
#include "mem/stream.h"
#include "tokenizer/tokenizer.h"

/* Resident bytes of a range (a file mapping or a heap buffer), counted a window of pages at a time so that a 13 GB model
 * needs a 64 KiB vector, not a 3 MB one. Returns 0 when mincore fails. */
static int resident_bytes(const void *data, size_t size, size_t page, uint64_t *out) {
    enum { WINDOW = 65536 };
    static const size_t win = WINDOW;
    unsigned char vec[WINDOW];
    uintptr_t start = (uintptr_t)data & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)data + size;
    if (!data || !size) return 1;
    for (uintptr_t a = start; a < end; a += win * page) {
        size_t len = end - a < win * page ? end - a : win * page;
        if (mincore((void *)a, len, vec)) return 0;
        size_t n = (len + page - 1) / page;
        for (size_t i = 0; i < n; i++)
            if (vec[i] & 1) {
                /* count only the part of the page inside the range */
                uintptr_t p0 = a + i * page, p1 = p0 + page;
                if (p0 < (uintptr_t)data) p0 = (uintptr_t)data;
                if (p1 > end) p1 = end;
                *out += p1 - p0;
            }
    }
    return 1;
}

/* 1: p lies in a file mapping, 2: in a restored .lbz (a heap buffer in a mapfile's place), 0: neither. */
static int map_kind(const lb_model *m, const void *p) {
    for (size_t i = 0; i < m->n_maps; i++) {
        const unsigned char *d = m->maps[i].data;
        if ((const unsigned char *)p >= d && (const unsigned char *)p < d + m->maps[i].size) return m->maps[i].heap ? 2 : 1;
    }
    return 0;
}

static void add_dtype(lb_mem_report *r, const char *name, uint64_t bytes) {
    int i = 0;
    while (i < r->n_dtypes && strcmp(r->by_dtype[i].dtype, name)) i++;
    if (i == r->n_dtypes) {
        if (r->n_dtypes == LB_MEM_REPORT_MAX_DTYPES) {
            i = LB_MEM_REPORT_MAX_DTYPES - 1;
            snprintf(r->by_dtype[i].dtype, sizeof r->by_dtype[i].dtype, "other");
        } else {
            snprintf(r->by_dtype[i].dtype, sizeof r->by_dtype[i].dtype, "%s", name);
            r->n_dtypes++;
        }
    }
    r->by_dtype[i].bytes += bytes;
    r->by_dtype[i].n_tensors++;
}

static int by_bytes_desc(const void *a, const void *b) {
    const lb_mem_dtype_bytes *x = a, *y = b;
    return (x->bytes < y->bytes) - (x->bytes > y->bytes);
}

/* Piece bytes plus per-entry tables (pointer, length, score, type, hash slot): an estimate,
 * since each tokenizer implementation lays its tables out differently. */
static uint64_t tokenizer_estimate(const lb_tokenizer *t) {
    if (!t) return 0;
    uint64_t bytes = (uint64_t)t->n_vocab * 40;
    char buf[256];
    for (int32_t id = 0; id < t->n_vocab; id++) bytes += t->ops->decode_token(t, id, 0, buf, sizeof buf);
    return bytes;
}

/* Resident and resident file-backed (shared) bytes from /proc/self/statm. */
static void statm_rss(size_t page, uint64_t *rss_out, uint64_t *file_out) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, rss = 0, shared = 0;
    *rss_out = *file_out = 0;
    if (!f) return;
    if (fscanf(f, "%llu %llu %llu", &size, &rss, &shared) == 3) {
        *rss_out = rss * page;
        *file_out = shared * page;
    }
    fclose(f);
}

#include <sys/resource.h>

/* VmHWM: the peak of this process's own memory since exec. ru_maxrss is not that: Linux carries
 * the launching process's peak across fork and exec, so a program started from a large parent
 * (a Python test, a server) would report the parent's peak. */
static uint64_t peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) {
            found = 1;
            break;
        }
    if (f) fclose(f);
    if (found) return (uint64_t)kb * 1024;
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0 : (uint64_t)ru.ru_maxrss * 1024;
}

static void session_part(const lb_session *s, size_t page, lb_mem_report *r) {
    r->has_session = 1;
    r->n_ctx = lb_session_n_ctx(s);
    r->n_past = lb_session_n_past(s);
    r->n_threads = lb_session_n_threads(s);
    lb_kv_type kv = lb_session_kv_type(s);
    snprintf(r->kv_type, sizeof r->kv_type, "%s", kv == LB_KV_Q4_0 ? "q4_0" : kv == LB_KV_Q8_0 ? "q8_0" : kv == LB_KV_F16 ? "f16" : "f32");
    r->kv_bytes_per_token = lb_session_kv_bytes_per_token(s->m, kv);
    lb_mem_tracker_stats(lb_session_mem_tracker(s), &r->runtime);
    for (int i = 0; i < r->runtime.n_tags; i++) {
        const lb_mem_tag_stats *t = &r->runtime.tags[i];
        if (!strcmp(t->name, "kv")) r->kv_bytes = t->live_bytes;
        else if (!strcmp(t->name, "logits")) r->logits_bytes = t->live_bytes;
        else if (!strcmp(t->name, "attention")) r->attention_bytes = t->live_bytes;
        else r->scratch_bytes += t->live_bytes;
    }
    r->kv_used_bytes = r->kv_bytes_per_token * (uint64_t)r->n_past;
    resident_bytes(lb_session_kv_base(s), lb_session_kv_bytes(s), page, &r->kv_resident_bytes);
    if (s->e->fwd.stream) {
        lb_stream_settle(s->e->fwd.stream);
        r->stream_window = lb_stream_window(s->e->fwd.stream);
        r->stream_window_bytes = lb_stream_window_bytes(s->e->fwd.stream);
    }
}

lb_status lb_model_mem_report(const lb_model *m, const lb_session *s, lb_mem_report *out, lb_error *err) {
    if (!m || !out) return lb_fail(err, LB_ERR_ARG, "lb_model_mem_report: NULL argument");
    if (s && s->m != m) return lb_fail(err, LB_ERR_ARG, "lb_model_mem_report: the session belongs to another model");
    lb_mem_report *r = out;
    memset(r, 0, sizeof *r);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    r->n_tensors = m->n_tensors;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const lb_tensor *t = &m->tensors[i];
        r->weight_bytes += t->nbytes;
        int k = map_kind(m, t->data);
        if (k == 1) r->mapped_weight_bytes += t->nbytes;
        else r->owned_weight_bytes += t->nbytes;
        if (k == 2) r->restored_weight_bytes += t->nbytes;
        add_dtype(r, lb_dtype_name(t->type), t->nbytes);
        if (t->type == LB_Q4_0_R8) r->repacked_weight_bytes += t->nbytes;
    }
    qsort(r->by_dtype, (size_t)r->n_dtypes, sizeof *r->by_dtype, by_bytes_desc);
    r->mapped_resident_known = 1;
    for (size_t i = 0; i < m->n_maps; i++) {
        if (m->maps[i].heap) { /* restored: anonymous memory, all of it resident */
            r->restored_bytes += m->maps[i].size;
            continue;
        }
        r->mapped_bytes += m->maps[i].size;
        if (!resident_bytes(m->maps[i].data, m->maps[i].size, page, &r->mapped_resident_bytes))
            r->mapped_resident_known = 0;
    }
    if (!r->mapped_resident_known) r->mapped_resident_bytes = 0;
    for (size_t i = 0; i < m->n_bufs; i++) r->owned_bytes += m->bufs[i].size;
    r->owned_bytes += r->restored_bytes;
    r->n_owned = (uint32_t)m->n_bufs;
    r->tokenizer_bytes = tokenizer_estimate(m->tok);
    if (s) session_part(s, page, r);
    /* a streaming session holds the fixed part and at most its window of layers resident, and
     * that, not every weight, is what its RSS can show */
    uint64_t counted = r->weight_bytes;
    if (r->stream_window) {
        uint64_t unit_max, head, fixed;
        uint32_t n_units;
        if (!lb_stream_sizes(m, LB_MAX_BATCH, &unit_max, &head, &fixed, &n_units, NULL, 0)) {
            r->stream_fixed_bytes = fixed;
            counted = fixed + r->stream_window_bytes;
        }
    }
    lb_model_mem_runtime(m, s ? r->n_threads : 1, &r->process);
    r->total_bytes = counted + (r->restored_bytes - r->restored_weight_bytes) + r->tokenizer_bytes + r->kv_bytes + r->scratch_bytes + r->logits_bytes +
                     r->attention_bytes + r->process.total;
    uint64_t file_rss;
    statm_rss(page, &r->proc_rss, &file_rss);
    r->proc_peak_rss = peak_rss();
    if (r->proc_peak_rss < r->proc_rss) r->proc_peak_rss = r->proc_rss; /* ru_maxrss lags by a page or two */
    /* anonymous memory only: mincore counts page-cache residency, which is not what RSS counts
     * for this process's file pages, so the file-backed part (the weights) is left out */
    uint64_t anon = r->proc_rss - (file_rss < r->proc_rss ? file_rss : r->proc_rss);
    uint64_t known = r->owned_bytes + r->kv_resident_bytes;
    r->overhead_bytes = anon > known ? anon - known : 0;
    return LB_OK;
}

/* The size of the executable segments of the loaded object that holds this function. */
static int text_of(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    uint64_t *out = data, text = 0;
    uintptr_t self = (uintptr_t)&text_of;
    int here = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t a = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        if (self >= a && self < a + ph->p_memsz) here = 1;
        if (ph->p_flags & PF_X) text += ph->p_memsz;
    }
    if (here) *out = text;
    return here;
}

void lb_model_mem_runtime(const lb_model *m, int n_threads, lb_mem_runtime *out) {
    n_threads = lb_pool_threads_for(n_threads); /* the threads a pool of that request runs */
    memset(out, 0, sizeof *out);
    out->baseline = m ? m->proc_baseline : 0;
    dl_iterate_phdr(text_of, &out->code);
    out->stacks = (uint64_t)n_threads * LB_MEM_THREAD_STACK;
    out->heap = LB_MEM_HEAP_SLACK;
    out->total = out->baseline + out->code + out->stacks + out->heap;
}

void lb_model_mem_plan_input(const lb_model *m, int n_threads, lb_mem_plan_in *in) {
    memset(in, 0, sizeof *in);
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    for (size_t i = 0; i < m->n_tensors; i++) in->weight_bytes += m->tensors[i].nbytes;
    /* a restored .lbz holds its whole original (headers, vocabulary, padding) in memory */
    for (size_t i = 0; i < m->n_maps; i++)
        if (m->maps[i].heap) {
            uint64_t inside = 0;
            for (size_t j = 0; j < m->n_tensors; j++)
                if (map_kind(m, m->tensors[j].data) == 2 && (const unsigned char *)m->tensors[j].data >= m->maps[i].data &&
                    (const unsigned char *)m->tensors[j].data < m->maps[i].data + m->maps[i].size)
                    inside += m->tensors[j].nbytes;
            in->weight_bytes += m->maps[i].size > inside ? m->maps[i].size - inside : 0;
        }
    in->kv_bytes_per_token[LB_MEM_KV_F32] = lb_session_kv_bytes_per_token(m, LB_KV_F32);
    in->kv_bytes_per_token[LB_MEM_KV_F16] = lb_session_kv_bytes_per_token(m, LB_KV_F16);
    in->kv_bytes_per_token[LB_MEM_KV_Q8_0] = lb_session_kv_bytes_per_token(m, LB_KV_Q8_0); /* 0: head_dim % 32 */
    in->kv_bytes_per_token[LB_MEM_KV_Q4_0] = lb_session_kv_bytes_per_token(m, LB_KV_Q4_0);
    size_t fixed, per_token;
    lb_session_scratch_plan(m, n_threads, &fixed, &per_token);
    in->scratch_bytes = fixed;
    in->scratch_bytes_per_token = per_token;
    lb_mem_runtime rt;
    lb_model_mem_runtime(m, n_threads, &rt);
    in->overhead_bytes = tokenizer_estimate(m->tok) + rt.total;
    in->n_ctx_train = m->cfg.ctx_train > 0 ? (uint32_t)m->cfg.ctx_train : 0;
    in->kv_forced = -1;
    if (lb_repack_enabled() && !m->no_repack) {
        size_t peak;
        in->repack_bytes = lb_repack_model_bytes(m, &peak);
        in->repack_peak_bytes = peak;
    }
    lb_stream_sizes(m, LB_MAX_BATCH, &in->stream_unit_bytes, &in->stream_head_bytes, &in->stream_fixed_bytes, &in->stream_units,
                    in->stream_refusal, sizeof in->stream_refusal);
}

lb_status lb_model_lock_weights(lb_model *m, lb_error *err) {
    for (size_t i = 0; i < m->n_maps; i++) {
        const lb_mapfile *f = &m->maps[i];
        if (f->size && mlock(f->data, f->size) != 0)
            return lb_fail(err, LB_ERR_NOMEM, "%s: cannot lock %zu bytes of weights in memory: %s", f->path ? f->path : "model",
                           f->size, strerror(errno));
    }
    return LB_OK;
}
