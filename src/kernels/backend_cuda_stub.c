/* Without -DLOWBIT_CUDA=ON the CUDA backend is absent; asking for it is a clear error. */
#include "core/error.h"
#include "kernels/backend.h"

#ifndef LOWBIT_CUDA
lb_status lb_backend_cuda(const lb_backend **out, lb_error *err) {
    *out = NULL;
    return lb_fail(err, LB_ERR_UNSUPPORTED, "this build has no CUDA backend (configure with -DLOWBIT_CUDA=ON)");
}

lb_status lb_cuda_device_info(char *name, size_t cap, size_t *total_bytes, lb_error *err) {
    return lb_fail(err, LB_ERR_UNSUPPORTED, "this build has no CUDA backend (configure with -DLOWBIT_CUDA=ON)");
}
#else
typedef int lb_cuda_stub_unused; /* ISO C wants a translation unit to declare something */
#endif
