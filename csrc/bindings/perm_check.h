// The explicit sample order of mlp_train, checked the same way by the CPU (_C) and GPU (_cuda)
// bindings. Header-only: the two modules share no object files.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace fastmlp::bind {

using PermArray = pybind11::array_t<int64_t, pybind11::array::c_style | pybind11::array::forcecast>;

// perm_obj: integers of shape (n,) (every epoch) or (epochs, n), each in [0, n). Returns it as
// contiguous int64 and sets per_epoch. Integers only: forcecast would truncate 1.7 to 1.
inline PermArray check_perm(const pybind11::object& perm_obj, int64_t n, int64_t epochs,
                            bool& per_epoch) {
    namespace py = pybind11;
    const bool is_array = py::isinstance<py::array>(perm_obj);
    if (!is_array || std::string("iu").find(py::array(perm_obj).dtype().kind()) == std::string::npos)
        throw py::type_error("mlp_train: 'perm' must be a numpy array of integers, got " +
                             std::string(py::str(is_array ? py::str(py::array(perm_obj).dtype())
                                                          : py::str(py::type::handle_of(perm_obj).attr("__name__")))));
    PermArray perm = PermArray::ensure(perm_obj);
    if (!perm) throw py::type_error("mlp_train: 'perm' must be an integer array");
    const bool one = perm.ndim() == 1 && perm.shape(0) == n;
    per_epoch = perm.ndim() == 2 && perm.shape(0) == epochs && perm.shape(1) == n;
    if (!one && !per_epoch) {
        std::string shape = "(";
        for (py::ssize_t i = 0; i < perm.ndim(); ++i)
            shape += (i ? ", " : "") + std::to_string(perm.shape(i));
        shape += perm.ndim() == 1 ? ",)" : ")";
        throw py::value_error("mlp_train: 'perm' must have shape (n,) = (" + std::to_string(n) +
                              ",) or (epochs, n), got " + shape);
    }
    const int64_t* pp = perm.data();
    for (py::ssize_t i = 0; i < perm.size(); ++i)
        if (pp[i] < 0 || pp[i] >= n)
            throw py::value_error("mlp_train: 'perm' holds index " + std::to_string(pp[i]) +
                                  " outside [0, " + std::to_string(n) + ")");
    return perm;
}

}  // namespace fastmlp::bind
