#include "kernels/cpu/cpu.h"

#include <stdatomic.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

int lb_cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* 0 unknown, 1 no, 2 yes: computing it twice in a race is harmless. */
    static _Atomic int cached;
    int c = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!c) {
        __builtin_cpu_init();
        /* clang 14 has no "f16c" feature name: read CPUID leaf 1, ECX bit 29 directly. */
        unsigned a, b, cx, d;
        int f16c = __get_cpuid(1, &a, &b, &cx, &d) && (cx & (1u << 29));
        c = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) ? 2 : 1;
        atomic_store_explicit(&cached, c, memory_order_relaxed);
    }
    return c == 2;
#else
    return 0;
#endif
}
