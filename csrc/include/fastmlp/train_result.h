// fastmlp: what both trainers return in common - per-epoch losses, steps taken, and where a
// non-finite batch loss stopped training. MlpTrainResult (mlp.h) and FitResult (mlp_fit.h) derive
// from it; the CPU trainers (csrc/cpu/mlp_train.cpp, mlp_fit.cpp), their CUDA twins
// (csrc/cuda/mlp_train_impl.h, mlp_fit_impl.h) and the emulators' references record a stop
// through mark_nonfinite, so the fields are set in one place.
#pragma once

#include <cstdint>
#include <vector>

namespace fastmlp {

struct TrainResultBase {
    std::vector<double> epoch_loss;  // per epoch: sum(batch loss * batch size) / samples used
    int64_t steps = 0;               // optimizer steps taken in this call
    bool stopped_nonfinite = false;  // a non-finite batch loss stopped training (before its update)
    int64_t bad_epoch = -1, bad_batch = -1;  // where (epoch index within this call, batch index)
    double bad_loss = 0.0;

    // The loss `loss` of batch `batch` of epoch `epoch` is non-finite: training stops before
    // that batch's update. The stopped epoch's loss is the mean so far, sum / used, or
    // `if_first` when it was the epoch's first batch.
    void mark_nonfinite(int64_t epoch, int64_t batch, double loss, double sum, int64_t used,
                        double if_first) {
        stopped_nonfinite = true;
        bad_epoch = epoch;
        bad_batch = batch;
        bad_loss = loss;
        epoch_loss.push_back(used ? sum / double(used) : if_first);
    }
};

}  // namespace fastmlp
