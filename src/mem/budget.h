/* Sizes and the memory budget planner: public API in lowbit.h ("memory (src/mem)"). */
#ifndef LB_MEM_BUDGET_H
#define LB_MEM_BUDGET_H
#include "lowbit.h"

#define LB_SIZE_MAX (1ull << 50) /* 1 PiB: anything larger is a typo, not a budget */

/* Bytes the plan needs for n_ctx tokens with KV type kv: weights + KV + scratch + overhead.
 * UINT64_MAX on overflow. kv_out and scratch_out (may be NULL) get those parts. */
uint64_t lb_mem_plan_total(const lb_mem_plan_in *in, uint32_t n_ctx, lb_mem_kv_dtype kv, uint64_t *kv_out,
                           uint64_t *scratch_out);

#endif
