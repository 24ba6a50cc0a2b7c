// CUDA device queries (no Python). Errors come back as std::runtime_error carrying the CUDA
// error string; nothing here calls exit().
#pragma once
#include <cstdint>
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
int current_device();
void set_device(int device);
int sm_count(int device);

// Where a pointer lives: the device ordinal for device or managed memory, -1 for host memory
// (plain or pinned-but-unmapped). Throws std::runtime_error when the driver cannot answer.
int pointer_device(const void* p);

// Throws std::runtime_error("<what>: <cuda error string>") when e != cudaSuccess.
void check_error(int e, const char* what);

}  // namespace fastmlp::cuda
