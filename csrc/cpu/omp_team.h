// This thread's place in its OpenMP team (internal header): team_id() in [0, team_size()).
// Outside a parallel region, or in a build without OpenMP, the thread is 0 of a team of 1.
// GCC folds the direct omp_get_thread_num() calls in a parallel region's own body (not in the
// functions it calls) into one, which it cannot do through this wrapper: a region body that
// asks twice keeps the direct calls (mlp_train.cpp's epoch team).
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastmlp {

inline int team_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

}  // namespace fastmlp
