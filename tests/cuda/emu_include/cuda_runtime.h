// Stand-in for <cuda_runtime.h> in the CPU emulation of fastmlp's kernels (tests/cuda/*_emulator.cpp):
// only the type the public kernel headers mention.
#pragma once
typedef struct CUstream_st* cudaStream_t;
