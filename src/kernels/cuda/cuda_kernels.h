/* The CUDA kernels' launchers, callable from C: plain pointers to device memory and sizes, all
 * launched on one stream (backend_cuda.c owns it). Weight formats as uploaded:
 *   Q8_0: qs int8 [rows][k], d half [rows][k/32] (split so each block's bytes load aligned)
 *   Q4_0: qs uint8 [rows][k/2] (16 bytes a block, nibbles as on the CPU), d half [rows][k/32]
 *   F16 / BF16 / F32: row-major [rows][k]
 * Quantized products take activations quantized to Q8_0 on the device (int8 [n_tok][k] and
 * float scales [n_tok][k/32], each scale rounded through F16 as the CPU does), so they add the
 * same integer dot products per block as the CPU kernels. */
#ifndef LB_KERNELS_CUDA_KERNELS_H
#define LB_KERNELS_CUDA_KERNELS_H
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { LB_CU_F32 = 0, LB_CU_F16 = 1, LB_CU_BF16 = 2, LB_CU_Q8_0 = 3, LB_CU_Q4_0 = 4 };
/* tokens one matrix-vector launch reads each weight row for */
#define LB_CU_MV_TOK 8

void lb_cu_quant_act(const float *x, int n_tok, int k, int8_t *xq, float *xd, cudaStream_t s);
/* y[t][r] = W[r] . x[t] for n_tok <= LB_CU_MV_TOK rows (y: n_tok rows of `rows` floats) */
void lb_cu_mv(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq, const float *xd,
              int rows, int k, int n_tok, float *y, cudaStream_t s);
/* The same with the launch shape given (bench/cuda_mv.cu sweeps them): split = warps sharing a
 * row's K range (1, 2, 4, 8), rows_per_warp = 1, or 2 / 4 for n_tok 1 (2 also for n_tok 2);
 * lb_cu_mv takes lb_cu_mv_split's split, which depends on the shape alone. */
void lb_cu_mv_cfg(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq, const float *xd,
                  int rows, int k, int n_tok, float *y, int split, int rows_per_warp, cudaStream_t s);
int lb_cu_mv_split(int type, const float *x, int rows, int k);
/* prompts of quantized weights: Q8_0-quantized activations as F16 values, and a weight
 * matrix of n elements (a multiple of 32) dequantized to F16 */
void lb_cu_quant_act_half(const float *x, int n_tok, int k, uint16_t *out, cudaStream_t s);
void lb_cu_dequant_half(int type, const void *wq, const uint16_t *wd, size_t n, uint16_t *out, cudaStream_t s);
void lb_cu_to_half(const float *x, uint16_t *out, size_t n, int bf16, cudaStream_t s);

/* x += add (add NULL: no add), then out = rmsnorm(x) * w (w NULL: no weight); xq non-NULL: out
 * also quantized to Q8_0 as lb_cu_quant_act does (n a multiple of 32). One launch where the
 * forward pass makes three; the same bits as lb_cu_add, plain RMSNorm and lb_cu_quant_act. */
void lb_cu_add_rmsnorm(float *out, float *x, const float *add, const float *w, int n_tok, int n, float eps, int8_t *xq,
                       float *xd, cudaStream_t s);
void lb_cu_rope(float *x, int n_tok, int n_heads, int hd, size_t row_stride, const float *cs, int neox, cudaStream_t s);
void lb_cu_glu(float *gate, const float *up, size_t n, int act, cudaStream_t s);
void lb_cu_add(float *y, const float *x, size_t n, cudaStream_t s);
void lb_cu_scale(float *y, float a, size_t n, cudaStream_t s);
/* holds the stream for about `us` microseconds (cuda_prof.c queues launches behind it) */
void lb_cu_spin(int us, cudaStream_t s);

typedef struct lb_cu_kv {
    uint8_t *base;
    size_t block_bytes, k_off, v_off, row_bytes, head_bytes;
    int block_tokens, kv_type; /* 0 F32, 1 F16, 2 Q8_0 (LB_KV_*) */
} lb_cu_kv;
/* slot[t] = {blk, off} pairs */
void lb_cu_kv_store(const lb_cu_kv *kv, const float *k, const float *v, int n_tok, int kv_dim, const int32_t *slot,
                    cudaStream_t s);
/* Tokens t0 .. t0 + n_run - 1 of a batch of n_tok; idx: pos [n_tok], table offset [n_tok], then
 * the tables; scores: n_run * n_heads * max_pos floats; window: 0, or the sliding window (a
 * query at p reads positions p - window + 1 .. p, as lb_attn_first says) */
void lb_cu_attention(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run, int n_heads,
                     int n_kv_heads, int hd, const int32_t *idx, float *scores, int max_pos, int window, cudaStream_t s);

/* The same for n_run consecutive positions of one sequence (a prompt: token t0 + i at position
 * idx[t0] + i, every token's table the same), tiled over positions; for head sizes where
 * lb_cu_attention_prefill_ok (a multiple of 8, at most 128). */
int lb_cu_attention_prefill_ok(int hd);
void lb_cu_attention_prefill(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run, int n_heads,
                             int n_kv_heads, int hd, const int32_t *idx, int window, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
