/* Model-file helpers for .lbz (model_regions.c); the region/name API is public in lowbit.h. */
#ifndef LB_COMPRESS_MODEL_REGIONS_H
#define LB_COMPRESS_MODEL_REGIONS_H
#include <stddef.h>
#include "lowbit.h"

/* 1 when data starts with the .lbz magic. */
int lb_lbz_is_container(const void *data, size_t size);
/* Restores a .lbz into memory (like lb_lbz_decompress_to_memory) with tensor names in the
 * error message of a corrupt chunk, when the kept header can be parsed. */
/* Before a restore: the kept header of the .lbz at path parses as a model whose tensors account
 * for the declared original size (within alignment slack), so a small container cannot make a
 * large allocation; *names: its regions (free with lb_model_regions_free). */
lb_status lb_lbz_restore_check(const char *path, lb_model_regions **names, uint64_t *orig_size, lb_error *err);
lb_status lb_lbz_restore_named(const char *path, int n_threads, lb_progress_fn progress, void *ud, void **buf,
                               size_t *size, lb_error *err);
#endif
