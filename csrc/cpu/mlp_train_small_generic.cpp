// The small-matrix trainer step and forward (mlp_train_small.h) compiled for the generic kernel path.
#include "mlp_train_small.h"

#define FASTMLP_SMALL_STEP_NAME small_step_generic
#define FASTMLP_SMALL_FORWARD_NAME small_forward_generic
#define FASTMLP_SMALL_PARTS_NAME small_parts_step_generic
FASTMLP_SMALL_STEP_BODY
