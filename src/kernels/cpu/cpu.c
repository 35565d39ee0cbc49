#include "kernels/cpu/cpu.h"

#include "lowbit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static lb_cpu_info g_info;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* The level again, for the per-dot-product dispatch sites: -1 until init ran. */
static _Atomic int g_level = -1;

#if defined(__x86_64__) || defined(__i386__)
/* XCR0: which register states the OS saves on a context switch. Inline asm, because the
 * intrinsic needs -mxsave on the whole file. */
static unsigned long long read_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

static lb_cpu_level detect(lb_cpu_info *in) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return LB_CPU_SCALAR;
    int fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
    if (!osxsave || !avx) return LB_CPU_SCALAR;
    unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return LB_CPU_SCALAR; /* SSE and AVX state */
    unsigned max7 = 0, b7 = 0, c7 = 0, a71 = 0;
    if (__get_cpuid_count(7, 0, &max7, &b7, &c7, &d) && max7 >= 1)
        __get_cpuid_count(7, 1, &a71, &b, &c, &d); /* leaves a71 0 when absent */
    int avx2 = b7 >> 5 & 1;
    if (!(avx2 && fma && f16c)) return LB_CPU_SCALAR;
    in->avx_vnni = a71 >> 4 & 1;
    int zmm_os = (xcr0 & 0xE0) == 0xE0; /* opmask, upper halves of zmm0-15, zmm16-31 */
    int f = b7 >> 16 & 1, dq = b7 >> 17 & 1, bw = b7 >> 30 & 1, vl = b7 >> 31 & 1;
    if (!(zmm_os && f && dq && bw && vl)) return LB_CPU_AVX2;
    in->vnni = c7 >> 11 & 1;
    in->avx512_bf16 = a71 >> 5 & 1;
    return LB_CPU_AVX512;
}
#else
static lb_cpu_level detect(lb_cpu_info *in) {
    (void)in;
    return LB_CPU_SCALAR;
}
#endif

static void init(void) {
    lb_cpu_info in = {0};
    in.hw = detect(&in);
    in.level = in.hw;
    const char *e = getenv("LOWBIT_CPU");
    if (e && *e) {
        for (int l = 0; l < LB_CPU_LEVEL_COUNT; l++)
            if (!strcmp(e, lb_cpu_level_name((lb_cpu_level)l)) && (lb_cpu_level)l < in.hw) {
                in.level = (lb_cpu_level)l;
                in.forced = 1;
            }
    }
    if (in.level < LB_CPU_AVX512) in.vnni = in.avx512_bf16 = 0;
    if (in.level < LB_CPU_AVX2) in.avx_vnni = 0;
    g_info = in;
    atomic_store(&g_level, (int)in.level);
}

const lb_cpu_info *lb_cpu_info_get(void) {
    pthread_once(&g_once, init);
    return &g_info;
}

lb_cpu_level lb_cpu_level_get(void) {
    int l = atomic_load_explicit(&g_level, memory_order_relaxed);
    return l >= 0 ? (lb_cpu_level)l : lb_cpu_info_get()->level;
}

const char *lb_cpu_level_name(lb_cpu_level l) {
    switch (l) {
    case LB_CPU_SCALAR: return "scalar";
    case LB_CPU_AVX2: return "avx2";
    case LB_CPU_AVX512: return "avx512";
    default: return "?";
    }
}

void lb_cpu_describe(char *buf, size_t size) {
    const lb_cpu_info *in = lb_cpu_info_get();
    char flags[64] = "";
    if (in->vnni) strcat(flags, " vnni");
    if (in->avx512_bf16) strcat(flags, " bf16");
    if (in->avx_vnni) strcat(flags, " avx-vnni");
    if (in->forced)
        snprintf(buf, size, "%s (forced by LOWBIT_CPU; cpu %s)", lb_cpu_level_name(in->level),
                 lb_cpu_level_name(in->hw));
    else
        snprintf(buf, size, "%s%s%s%s", lb_cpu_level_name(in->level), *flags ? " (" : "",
                 *flags ? flags + 1 : "", *flags ? ")" : "");
}

const char *lb_cpu_kernels(char *buf, size_t cap) {
    if (buf && cap) lb_cpu_describe(buf, cap);
    return buf;
}

int lb_cpu_has_avx2(void) { return lb_cpu_level_get() >= LB_CPU_AVX2; }

int lb_cpu_has_avx512_vnni(void) {
    const lb_cpu_info *in = lb_cpu_info_get();
    return in->level >= LB_CPU_AVX512 && in->vnni;
}
