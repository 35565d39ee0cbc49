/* lowbit public API, part: memory: monitor, pressure, sizes, budgets and plans. Included by lowbit.h only (it relies on what lowbit.h
 * and the parts before it declare); include <lowbit.h>, never this file. */
#ifndef LOWBIT_MEM_H
#define LOWBIT_MEM_H
#ifndef LOWBIT_H
#error "include <lowbit.h>, not its parts"
#endif

/* ---- memory (src/mem) ------------------------------------------------------------------ */
/* Monitor: system (/proc/meminfo), cgroup (v2, or the v1 memory controller on hybrid hosts),
 * pressure stall information (/proc/pressure/memory) and this process (/proc/self/status,
 * statm; smaps_rollup on request). The files stay open and are re-read with pread, so a snapshot
 * is a few syscalls. All byte counts are bytes. A missing source (no cgroup, no PSI, an old
 * kernel) clears its *_present flag; it is never an error. Not thread-safe: one monitor per
 * thread, or lock around it. */
typedef struct lb_memmon lb_memmon;

typedef struct lb_psi_avg {
    double avg10, avg60, avg300; /* percent of wall time stalled, 0..100 */
} lb_psi_avg;

typedef struct lb_mem_snapshot {
    uint64_t time_ns; /* CLOCK_MONOTONIC when taken */
    /* system */
    uint64_t sys_total, sys_available, sys_free, sys_cached, sys_swap_total, sys_swap_free;
    /* cgroup: the process's own group; limit is the smallest of it and its ancestors */
    int cgroup_present;        /* 0 when not in a memory-controlled cgroup */
    int cgroup_version;        /* 2, or 1 for the legacy memory controller */
    uint64_t cgroup_limit;     /* UINT64_MAX when unlimited ("max") */
    uint64_t cgroup_usage;     /* memory.current (v1: memory.usage_in_bytes) */
    int cgroup_peak_present;   /* memory.peak (v1: memory.max_usage_in_bytes) exists */
    uint64_t cgroup_peak;
    /* memory.stat costs as much as the rest of a snapshot together, so it is read only when
     * the cgroup has a limit (the working set matters then) or for a detailed snapshot */
    int cgroup_stat_present;
    uint64_t cgroup_anon, cgroup_file, cgroup_inactive_file;
    /* pressure stall information */
    int psi_present;
    lb_psi_avg psi_some, psi_full;
    /* process (statm, getrusage): rss = anon + file; file counts shared memory too (RssFile +
     * RssShmem); peak_rss is ru_maxrss, the number /usr/bin/time -v reports (>= VmHWM) */
    uint64_t proc_rss, proc_anon, proc_file, proc_peak_rss, proc_vm_size;
    /* only from lb_memmon_snapshot_detailed (/proc/self/status and smaps_rollup; 0 when a file
     * is missing); detailed_present says so */
    int detailed_present;
    uint64_t proc_shmem, proc_swap, proc_hwm; /* RssShmem, VmSwap, VmHWM */
    uint64_t proc_pss, proc_pss_anon, proc_pss_file, proc_pss_shmem, proc_private_dirty,
        proc_locked;
} lb_mem_snapshot;

LB_API lb_status lb_memmon_open(lb_memmon **out, lb_error *err);
LB_API void lb_memmon_close(lb_memmon *m);
/* The cgroup directory in use ("" when none). */
LB_API const char *lb_memmon_cgroup_path(const lb_memmon *m);
LB_API lb_status lb_memmon_snapshot(lb_memmon *m, lb_mem_snapshot *out, lb_error *err);
/* Adds /proc/self/smaps_rollup (PSS, locked): about ten times slower than a plain snapshot. */
LB_API lb_status lb_memmon_snapshot_detailed(lb_memmon *m, lb_mem_snapshot *out, lb_error *err);

/* Pressure levels. The level is the highest that any one signal reaches:
 *                      LOW      MEDIUM   HIGH     CRITICAL
 *   available/total    < 25%    < 15%    < 8%     < 3%
 *   cgroup working set > 75%    > 85%    > 92%    > 97%   of the limit (working set = usage
 *                                                           minus inactive file cache, which
 *                                                           the kernel reclaims first)
 *   PSI some avg10     > 1%     > 10%    > 25%    > 50%
 *   PSI full avg10     -        > 1%     > 5%     > 20%
 * CRITICAL means the kernel is about to reclaim hot pages or OOM-kill: stop growing now. */
typedef enum lb_mem_pressure {
    LB_MEM_PRESSURE_NONE = 0,
    LB_MEM_PRESSURE_LOW,
    LB_MEM_PRESSURE_MEDIUM,
    LB_MEM_PRESSURE_HIGH,
    LB_MEM_PRESSURE_CRITICAL
} lb_mem_pressure;

LB_API lb_mem_pressure lb_mem_pressure_level(const lb_mem_snapshot *s);
LB_API const char *lb_mem_pressure_name(lb_mem_pressure p); /* "none", "low", ... */
/* Writes which signal set the level ("cgroup working set 93% of limit") into buf. */
LB_API const char *lb_mem_pressure_reason(const lb_mem_snapshot *s, char *buf, size_t cap);

/* The memory guard of generation loops: polls a monitor every few tokens. HIGH pressure warns
 * once; CRITICAL says stop now (the kernel is about to reclaim hot pages, our mmapped weights,
 * or OOM-kill: a stopped run is better than a thrashing machine). */
typedef enum lb_mem_guard_action {
    LB_MEM_GUARD_CONTINUE = 0,
    LB_MEM_GUARD_WARN, /* first time the level reached HIGH */
    LB_MEM_GUARD_STOP  /* CRITICAL */
} lb_mem_guard_action;
/* root: NULL or "" for the real /proc and /sys, else a fake tree (tests).
 * every: poll once per this many steps (0: 8); the first step polls. */
LB_API lb_status lb_mem_guard_open(const char *root, unsigned every, lb_mem_guard **out, lb_error *err);
LB_API void lb_mem_guard_close(lb_mem_guard *g);
/* One call per generated token. A failed snapshot counts as no pressure (logged once). */
LB_API lb_mem_guard_action lb_mem_guard_step(lb_mem_guard *g);
/* Level and the signal that set it at the last change ("available memory 2.1% of total"). */
LB_API lb_mem_pressure lb_mem_guard_level(const lb_mem_guard *g);
LB_API const char *lb_mem_guard_reason(const lb_mem_guard *g);
LB_API unsigned long lb_mem_guard_polls(const lb_mem_guard *g);

/* Called from lb_memmon_poll when the level changes (the first poll counts as a change from
 * NONE only when the level is not NONE). */
typedef void (*lb_mem_pressure_cb)(lb_mem_pressure old_level, lb_mem_pressure new_level,
                                   const lb_mem_snapshot *s, void *userdata);
LB_API lb_status lb_memmon_on_pressure(lb_memmon *m, lb_mem_pressure_cb cb, void *userdata, lb_error *err);
/* Takes a snapshot, calls the callbacks if the level changed; *level (may be NULL) gets it. */
LB_API lb_status lb_memmon_poll(lb_memmon *m, lb_mem_pressure *level, lb_error *err);

/* Tracked allocation (runtime buffers: KV cache, activations, scratch). A tracker counts the
 * bytes it hands out, in total and per tag ("kv", "scratch", "logits"); the allocation calls
 * themselves are internal (src/mem/arena.h). In debug mode (LB_MEM_TRACK_DEBUG, or the
 * environment variable LOWBIT_DEBUG_ALLOC=1) it records each allocation's file:line and reports
 * what was never freed. Not thread-safe. */
typedef struct lb_mem_tracker lb_mem_tracker;

#define LB_MEM_TRACK_DEBUG 1u
#define LB_MEM_MAX_TAGS 32

typedef struct lb_mem_tag_stats {
    char name[24];
    uint64_t live_bytes, peak_bytes, n_allocs;
} lb_mem_tag_stats;

typedef struct lb_mem_stats {
    uint64_t live_bytes, peak_bytes; /* requested bytes (arenas and pools count their whole chunk) */
    uint64_t n_allocs, n_frees, n_live;
    int n_tags;
    lb_mem_tag_stats tags[LB_MEM_MAX_TAGS]; /* tags past the last slot are counted as "other" */
} lb_mem_stats;

LB_API lb_status lb_mem_tracker_new(unsigned flags, lb_mem_tracker **out, lb_error *err);
/* In debug mode, logs a leak report (a warning) when allocations are still live. */
LB_API void lb_mem_tracker_free(lb_mem_tracker *t);
LB_API void lb_mem_tracker_stats(const lb_mem_tracker *t, lb_mem_stats *out);
/* Writes one line per live allocation ("kv 4096 bytes at src/x.c:12") into buf (truncated to
 * cap, always NUL-terminated when cap > 0) and returns the number of live allocations. Sites are
 * known only in debug mode ("?:0" otherwise). */
LB_API size_t lb_mem_tracker_leaks(const lb_mem_tracker *t, char *buf, size_t cap);

/* Sizes. Binary units: 6G = 6GiB = 6GB = 6 x 2^30 bytes. Accepts an integer or decimal number
 * ("1.5G") with an optional unit B, K, M, G, T, P (each optionally followed by "iB" or "B",
 * any case). Refuses empty, garbage, negative, zero, fractional byte counts and sizes > 1 PiB. */
LB_API lb_status lb_size_parse(const char *s, uint64_t *out, lb_error *err);
/* "3.56 GiB", "512 B"; returns buf. */
LB_API const char *lb_size_format(uint64_t n, char *buf, size_t cap);

/* Budget planner: the largest context and KV cache type that fit a memory budget. Pure. */
/* Q4_0 is planned only when asked for (kv_forced): the planner never lowers to it on its own. */
typedef enum lb_mem_kv_dtype { LB_MEM_KV_F32 = 0, LB_MEM_KV_F16, LB_MEM_KV_Q8_0, LB_MEM_KV_Q4_0, LB_MEM_KV_COUNT } lb_mem_kv_dtype;
LB_API const char *lb_mem_kv_dtype_name(lb_mem_kv_dtype t); /* "f32", "f16", "q8_0" */

typedef struct lb_mem_plan_in {
    uint64_t budget;                             /* bytes; required */
    uint64_t weight_bytes;                       /* resident weights (mmapped or loaded) */
    uint64_t kv_bytes_per_token[LB_MEM_KV_COUNT]; /* all layers, K and V; 0: type not available */
    uint64_t scratch_bytes;                      /* activations, logits: fixed part */
    uint64_t scratch_bytes_per_token;            /* the part that grows with the context */
    uint64_t overhead_bytes;                     /* tokenizer, runtime, code */
    uint32_t n_ctx_requested;                    /* 0: the trained context */
    uint32_t n_ctx_train;                        /* 0: unknown (then n_ctx_requested is needed) */
    uint32_t n_ctx_min;                          /* smallest useful context when shrinking; 0: 16 */
    uint32_t n_ctx_align;                        /* a shrunk context is a multiple of this; 0: 1 */
    int ctx_strict;                              /* 1: never shrink (the user asked for --ctx) */
    int kv_forced;                               /* -1: choose; else an lb_mem_kv_dtype to use */
    uint64_t memlock_limit;                      /* RLIMIT_MEMLOCK; 0: never lock the weights */
    /* Q4_0 matrices a CPU engine repacks into 8-row groups: they move from the mapped file to the
     * heap (same size, pages of the file released); peak: the largest, held twice while copied */
    uint64_t repack_bytes, repack_peak_bytes;
    /* Streaming (weights read layer by layer from the file when they do not fit): the largest
     * layer, the output head, the part that stays resident (norms, tensors converted at load),
     * the number of units (layers + head; 0: streaming not considered); stream_refusal
     * non-empty: why this model cannot stream. A window of w units holds at most
     * (w - 1) layers + the larger of a layer and the head. */
    uint64_t stream_unit_bytes, stream_head_bytes, stream_fixed_bytes;
    uint32_t stream_units;
    char stream_refusal[256];
    int stream_allowed; /* 1: the caller streams when the plan says so (lb_session_params.stream_window); 0: never planned */
} lb_mem_plan_in;

typedef struct lb_mem_plan {
    uint32_t n_ctx;
    lb_mem_kv_dtype kv_dtype;
    uint64_t weight_bytes, kv_bytes, scratch_bytes, overhead_bytes, total_bytes, budget;
    int shrunk;       /* n_ctx < the requested context */
    int kv_fallback;  /* Q8_0 (or F32) chosen instead of F16 */
    int lock_weights; /* the weights fit RLIMIT_MEMLOCK and the plan fits: mlock them */
    char summary[512]; /* the plan, or why nothing fits, as one line */
    /* 1: the budget also holds the repack's transient copy, so repack (lb_model_set_repack);
     * 0: keep the plain layout (nothing to repack, or no room) */
    int repack;
    /* the weights do not fit, so they stream through a window of stream_window units
     * (stream_window_bytes resident; weight_bytes is then that window plus the fixed part) */
    int streaming;
    uint32_t stream_window;
    uint64_t stream_window_bytes;
} lb_mem_plan;

/* Order: F16 at the requested context, then Q8_0 at it, then (unless ctx_strict) the largest
 * context with Q8_0 (or the forced type). When the weights leave room for fewer than n_ctx_min
 * tokens and stream_allowed is set: streaming at the requested context, F16 then Q8_0 KV with a window of at least two
 * units (one computing, one being read), else the first type that leaves room for one; refused
 * (naming one unit + KV + scratch) when not even one unit fits. LB_OK with out filled when something fits;
 * LB_ERR_BUDGET with out->summary and err naming every part ("weights 3.56 GiB + KV cache (4096
 * tokens, f16) 2.00 GiB + scratch 0.10 GiB = 5.66 GiB > budget 4.00 GiB"); LB_ERR_RANGE when
 * the requested context exceeds the trained one; LB_ERR_ARG for a zero budget or no KV type. */
LB_API lb_status lb_mem_plan_make(const lb_mem_plan_in *in, lb_mem_plan *out, lb_error *err);

/* The runtime part of a plan and a report: what the process holds besides the model's weights,
 * tokenizer, KV cache and scratch, estimated from its parts (docs/design.md, "The runtime part"):
 *   baseline  the process's RSS when its first model's load began (/proc/self/statm, read
 *             once per process): the program and the libraries as far as they were touched,
 *             libc's heap, the main stack, and whatever the caller held then (a Python
 *             interpreter); later models plan with the same figure
 *   code      the size of the executable segments of the object that holds liblowbit (the
 *             lowbit binary or liblowbit.so, from dl_iterate_phdr): the kernels and the forward
 *             pass run after the load; every page counted, an upper bound
 *   stacks    LB_MEM_THREAD_STACK for each of the n_threads threads computing (the stack pages
 *             one touches; pool workers allocate nothing, so glibc gives them no malloc arena)
 *   heap      LB_MEM_HEAP_SLACK: small buffers made after the load (stdio, the sampler, the
 *             caller's text) and the free space malloc keeps
 * total is their sum. n_threads <= 0: all online CPUs. */
typedef struct lb_mem_runtime {
    uint64_t baseline, code, stacks, heap, total;
} lb_mem_runtime;
#define LB_MEM_THREAD_STACK (64ull << 10)
#define LB_MEM_HEAP_SLACK (512ull << 10)
LB_API void lb_model_mem_runtime(const lb_model *m, int n_threads, lb_mem_runtime *out);

/* Per-model accounting (src/mem/report.c): what a loaded model and (optionally) its session
 * hold, from the tensor table, the mappings (mincore) and the session's tracker. */
#define LB_MEM_REPORT_MAX_DTYPES 8

typedef struct lb_mem_dtype_bytes {
    char dtype[12];     /* "F16", "Q4_0"; "other" collects types past the last slot */
    uint64_t bytes;
    uint32_t n_tensors;
} lb_mem_dtype_bytes;

typedef struct lb_mem_report {
    /* weights: weight_bytes = mapped_weight_bytes + owned_weight_bytes = sum of the tensors' sizes */
    uint64_t weight_bytes, n_tensors;
    int n_dtypes;                                   /* by_dtype entries used, largest first */
    lb_mem_dtype_bytes by_dtype[LB_MEM_REPORT_MAX_DTYPES];
    uint64_t mapped_weight_bytes;   /* tensors used in place from the mmapped file (zero-copy) */
    uint64_t owned_weight_bytes;    /* tensors converted or copied at load into owned buffers */
    uint64_t mapped_bytes;          /* all file mappings: weights plus headers and vocabulary */
    uint64_t mapped_resident_bytes; /* pages of the mappings in RAM now (mincore) */
    int mapped_resident_known;      /* 0 when mincore failed */
    uint64_t owned_bytes;           /* every buffer the loader allocated (lb_model->bufs) */
    uint32_t n_owned;
    uint64_t tokenizer_bytes;       /* estimate: piece bytes + 40 bytes of tables per entry */
    /* session (zero when none was given) */
    int has_session;
    int n_ctx, n_past, n_threads;
    char kv_type[8];                /* "f32", "f16", "q8_0" */
    uint64_t kv_bytes_per_token;    /* all layers, K and V */
    uint64_t kv_bytes;              /* allocated: n_ctx positions */
    uint64_t kv_used_bytes;         /* filled: n_past positions */
    uint64_t kv_resident_bytes;     /* pages of the cache in RAM now (mincore; the cache is not
                                     * zeroed, so pages become resident as positions fill) */
    uint64_t scratch_bytes;         /* activations (tag "scratch") */
    uint64_t logits_bytes;          /* tag "logits" */
    uint64_t attention_bytes;       /* attention scores, n_threads x n_ctx (tag "attention") */
    lb_mem_stats runtime;           /* the session's tracker: live and peak per tag */
    /* the process's runtime part (lb_model_mem_runtime) for the session's threads (1 without one) */
    lb_mem_runtime process;
    /* weights + tokenizer + KV + scratch + logits + attention + process.total: the cost with
     * every page resident, what a plan compares with the budget (streaming: the fixed part and
     * the window instead of every weight) */
    uint64_t total_bytes;
    /* this process now, for comparison (statm, getrusage) */
    uint64_t proc_rss, proc_peak_rss;
    /* anonymous RSS - owned buffers - kv_resident: what else is resident besides weights and KV
     * (scratch, tokenizer, heap, thread stacks, the caller's own buffers); 0 if negative */
    uint64_t overhead_bytes;
    /* a .lbz restored at load: its buffer (in owned_bytes, not mapped_bytes) and the tensors in
     * it (in owned_weight_bytes, never mapped_weight_bytes) */
    uint64_t restored_bytes, restored_weight_bytes;
    /* Q4_0 tensors repacked into 8-row groups by a CPU engine (heap, in owned_weight_bytes) */
    uint64_t repacked_weight_bytes;
    /* the session streams its weights: units resident at once and their bytes (0: it does not) */
    int stream_window;
    uint64_t stream_window_bytes;
    /* ... and the part of the weights outside the streamed units (norms, tensors converted at
     * load, the token rows one batch looks up); total_bytes then counts this plus the window,
     * not weight_bytes */
    uint64_t stream_fixed_bytes;
} lb_mem_report;

/* s may be NULL (then only the model's part is filled). */
LB_API lb_status lb_model_mem_report(const lb_model *m, const lb_session *s, lb_mem_report *out, lb_error *err);

/* Fills the model's part of a plan request: weight_bytes (all tensors), the streaming sizes, kv_bytes_per_token for
 * the KV cache types the engine has (F32, F16, Q8_0; Q8_0 stays 0 when head_dim % 32 != 0),
 * scratch fixed and per token for n_threads (0: all online CPUs), overhead (tokenizer estimate
 * + lb_model_mem_runtime for n_threads) and n_ctx_train; kv_forced = -1.
 * The caller sets budget, n_ctx_requested, ctx_strict (and kv_forced to pin a type). */
LB_API void lb_model_mem_plan_input(const lb_model *m, int n_threads, lb_mem_plan_in *in);

/* Locks the model's mapped weights in RAM (mlock), so memory pressure cannot evict them and
 * make every token re-read them from disk; what a plan with lock_weights asks for. */
LB_API lb_status lb_model_lock_weights(lb_model *m, lb_error *err);

#endif
