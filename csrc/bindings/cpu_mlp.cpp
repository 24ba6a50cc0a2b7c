// fastmlp._C: the fused MLP trainer's bindings (filled in by the trainer work, issue 5).
#include <pybind11/pybind11.h>

namespace fastmlp::bind {
void register_mlp(pybind11::module_& m) { (void)m; }
}  // namespace fastmlp::bind
