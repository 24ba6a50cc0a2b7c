// fastmlp: what both trainers return in common - per-epoch losses, steps taken, and where a
// non-finite batch loss stopped training. MlpTrainResult (mlp.h) and FitResult (mlp_fit.h) derive
// from it; the CPU trainers (csrc/cpu/mlp_train.cpp, mlp_fit.cpp), their CUDA twins
// (csrc/cuda/mlp_train_impl.h, mlp_fit_impl.h) and the emulators' references record a stop
// through mark_nonfinite, so the fields are set in one place.
#pragma once

#include <cstdint>
#include <limits>
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

    // epoch_loss and steps from the batch losses of `epochs` epochs of `nbatches` batches each
    // (n rows in batches of bs, the last one short), in step order, as the CPU trainers sum them:
    // the loss of step `bad` is non-finite (bad >= every step: none; a stop at an epoch's first
    // batch gives that epoch that loss where first_is_loss, else NaN), steps from `queued` on
    // never ran (a stop asked for before them). Returns false where it ended at such an unrun
    // step. The GPU trainers' one pass over their copied-back losses (csrc/cuda/mlp_train_impl.h,
    // mlp_fit_impl.h).
    bool tally_losses(const std::vector<double>& losses, int64_t bad, int64_t queued,
                      int64_t epochs, int64_t nbatches, int64_t n, int64_t bs, bool first_is_loss) {
        for (int64_t e = 0; e < epochs; ++e) {
            double sum = 0.0;
            int64_t used = 0;
            for (int64_t bi = 0; bi < nbatches; ++bi) {
                const int64_t s = e * nbatches + bi, nb = bs < n - bi * bs ? bs : n - bi * bs;
                if (s >= queued && s < bad) return false;
                const double loss = losses[size_t(s)];
                if (s == bad) {
                    mark_nonfinite(e, bi, loss, sum, used,
                                   first_is_loss ? loss : std::numeric_limits<double>::quiet_NaN());
                    return true;
                }
                ++steps;
                sum += loss * double(nb);
                used += nb;
            }
            epoch_loss.push_back(sum / double(used));
        }
        return true;
    }
};

}  // namespace fastmlp
