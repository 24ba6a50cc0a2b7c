// CUDA device queries (no Python). Errors come back as std::runtime_error carrying the CUDA
// error string; nothing here calls exit().
#pragma once
#include <string>

namespace fastmlp::cuda {

// Number of usable devices; 0 when there is no driver or no GPU (never throws).
int device_count() noexcept;
// Why device_count() is 0 ("no CUDA driver", the CUDA error string, ...), or "" when it is not.
std::string status();
std::string device_name(int device);
void synchronize();
int runtime_version();
int driver_version();

}  // namespace fastmlp::cuda
