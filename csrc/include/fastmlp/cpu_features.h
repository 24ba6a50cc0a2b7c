// Run-time CPU ISA detection and selection, and the OpenMP thread setting.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fastmlp {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "generic" | "avx2" | "avx512"; throws std::invalid_argument otherwise.
Isa isa_from_name(const std::string& name);
// What this CPU (and OS, via XGETBV) supports, best last.
std::vector<Isa> supported_isas();
// The ISA the kernels use now. Chosen at first use: FASTMLP_CPU if set (throws
// std::runtime_error when the CPU lacks it), else the best supported.
Isa current_isa();
// Force one; throws std::runtime_error when unsupported.
void set_isa(Isa isa);

// Threads (OpenMP). get returns what the next parallel region would use. set throws
// std::invalid_argument outside [1, max_threads()].
int get_num_threads();
void set_num_threads(int n);
// The most threads set_num_threads accepts: 4 per CPU, at least 64.
int max_threads();
// True in a child forked after this process ran a parallel region: there every kernel runs on one
// thread (GNU libgomp's pool does not survive fork), and set_num_threads has no effect.
bool in_forked_child();
// Threads worth using for `flops` floating point operations (1 for small problems).
int threads_for(double flops);

}  // namespace fastmlp
