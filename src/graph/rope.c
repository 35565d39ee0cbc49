/* RoPE frequencies, including the scaling schemes published checkpoints use. */
#include <math.h>

#include "graph/rope.h"

static double base_freq(const lb_config *c, int i) { return 1.0 / pow((double)c->rope_theta, (double)(2 * i) / c->head_dim); }

void lb_rope_inv_freq(const lb_config *c, const float *factors, float *inv_freq) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = base_freq(c, i);
        if (factors) {
            inv_freq[i] = (float)(f / factors[i]);
            continue;
        }
        if (c->rope_scaling == LB_ROPE_SCALE_LINEAR && c->rope_factor > 0) {
            f /= c->rope_factor;
        } else if (c->rope_scaling == LB_ROPE_SCALE_LLAMA3 && c->rope_factor > 0) {
            /* Llama 3.1: long wavelengths are slowed by factor, short ones kept, a smooth ramp between */
            double lo = c->rope_low_freq_factor > 0 ? c->rope_low_freq_factor : 1.0;
            double hi = c->rope_high_freq_factor > 0 ? c->rope_high_freq_factor : 4.0;
            double orig = c->rope_orig_ctx > 0 ? c->rope_orig_ctx : 8192;
            double wavelen = 2 * M_PI / f;
            double lo_wavelen = orig / lo, hi_wavelen = orig / hi;
            if (wavelen > lo_wavelen) f /= c->rope_factor;
            else if (wavelen >= hi_wavelen) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        float v = (float)f;
        if (c->rope_freq_type == LB_BF16) v = lb_bf16_to_f32(lb_f32_to_bf16(v));
        else if (c->rope_freq_type == LB_F16) v = lb_fp16_to_f32(lb_f32_to_fp16(v));
        inv_freq[i] = v;
    }
}

void lb_rope_table(const float *inv_freq, int half, int pos, float *cs) {
    for (int i = 0; i < half; i++) {
        /* angle in float like the reference implementations, cos/sin in double for accuracy */
        float ang = (float)pos * inv_freq[i];
        cs[i] = (float)cos((double)ang);
        cs[half + i] = (float)sin((double)ang);
    }
}

void lb_rope_apply(float *x, int n_heads, int head_dim, const float *cs, lb_rope_layout layout) {
    int half = head_dim / 2;
    const float *sn = cs + half;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        if (layout == LB_ROPE_NEOX) {
            for (int i = 0; i < half; i++) {
                float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * cs[i] - x1 * sn[i];
                v[i + half] = x0 * sn[i] + x1 * cs[i];
            }
        } else {
            for (int i = 0; i < half; i++) {
                float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * cs[i] - x1 * sn[i];
                v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

int lb_rope_freq_factors(const lb_config *c, float *factors) {
    if (c->rope_scaling != LB_ROPE_SCALE_LLAMA3 && c->rope_freq_type == LB_F32) return 0;
    int half = c->head_dim / 2;
    lb_config plain = *c;
    plain.rope_scaling = LB_ROPE_SCALE_NONE;
    plain.rope_freq_type = LB_F32;
    float actual[2048];
    if (half > 2048) return 0;
    lb_rope_inv_freq(c, NULL, actual);
    for (int i = 0; i < half; i++) factors[i] = (float)(base_freq(&plain, i) / actual[i]);
    return 1;
}
