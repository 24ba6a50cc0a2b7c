// The general trainer's small-path forward and backward (mlp_fit_small_body.h) compiled for the
// avx2 kernel path.
#include "mlp_fit_small_body.h"

#define FASTMLP_FIT_SMALL_FORWARD_NAME fit_small_forward_avx2
#define FASTMLP_FIT_SMALL_BACKWARD_NAME fit_small_backward_avx2
FASTMLP_FIT_SMALL_BODY
