// The small-matrix trainer step and forward (mlp_train_small.h) compiled for the avx2 kernel path.
#include "mlp_train_small.h"

#define FASTMLP_SMALL_STEP_NAME small_step_avx2
#define FASTMLP_SMALL_FORWARD_NAME small_forward_avx2
#define FASTMLP_SMALL_PARTS_NAME small_parts_step_avx2
FASTMLP_SMALL_STEP_BODY
