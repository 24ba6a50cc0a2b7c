// The trainers' common result (TrainResultBase: mlp_train's, mlp_fit's, on either device) as the
// dict their Python callers read (fastmlp.trainer, fastmlp.sklearn), for _C and _cuda alike.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastmlp/train_result.h"

namespace fastmlp::bind {

// "losses" (per epoch), "steps", then the caller's own entries (more(d), e.g. "small_path"),
// then "nonfinite": (epoch, batch, loss) of the non-finite batch loss that stopped training, or
// None.
template <class More>
pybind11::dict train_result_dict(const TrainResultBase& r, More&& more) {
    pybind11::dict d;
    d["losses"] = r.epoch_loss;
    d["steps"] = r.steps;
    more(d);
    if (r.stopped_nonfinite)
        d["nonfinite"] = pybind11::make_tuple(r.bad_epoch, r.bad_batch, r.bad_loss);
    else
        d["nonfinite"] = pybind11::none();
    return d;
}
inline pybind11::dict train_result_dict(const TrainResultBase& r) {
    return train_result_dict(r, [](pybind11::dict&) {});
}

}  // namespace fastmlp::bind
