// The inference forward's kernels (mlp_infer_kernels_body.h) compiled for the avx2 kernel path.
#include <algorithm>

#include "mlp_infer_kernels_body.h"

#define FASTMLP_INFER_KERNELS_NAME infer_kernels_avx2
FASTMLP_INFER_KERNELS_BODY
