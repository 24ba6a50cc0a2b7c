// optim_step_many's loops (optimizers_body.h) compiled with AVX2 (this file alone gets -mavx2
// -mfma; with -ffp-contract=off no multiply-add is fused, so the bits equal the baseline copy's).
#include "optimizers_body.h"

namespace fastmlp {

void (*optim_range_fn_avx2(const OptimOptions& o))(float*, const float*, float*, float*, float*,
                                                   int64_t, int64_t, const OptimCoeffs&) {
    return pick(o);
}

}  // namespace fastmlp
