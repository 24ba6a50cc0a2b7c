// The inference forward's kernels (mlp_infer_kernels.h) compiled for the avx2 kernel path.
#include <algorithm>

#include "mlp_infer_kernels.h"

#define FASTMLP_INFER_KERNELS_NAME infer_kernels_avx2
FASTMLP_INFER_KERNELS_BODY
