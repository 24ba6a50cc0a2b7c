"""``fastmlp.linalg``: the vector norms MLP code reaches for (``torch.linalg.norm`` /
``vector_norm``, and the Frobenius ``matrix_norm``)."""
from __future__ import annotations

from .tensor import Tensor, vector_norm

__all__ = ["norm", "vector_norm", "matrix_norm"]


def norm(A, ord=None, dim=None, keepdim=False, *, out=None, dtype=None):  # noqa: A002
    """``ord=None``: the 2-norm of the flattened input (or over ``dim``) — for a matrix, its
    Frobenius norm; a number or ±inf: the vector norm over ``dim`` (a 1-D input, or one ``dim``);
    ``'fro'``: Frobenius over the last two dims (or ``dim``)."""
    if not isinstance(A, Tensor):
        raise TypeError(f"linalg.norm(): argument 'input' must be Tensor, not {type(A).__name__}")
    if ord is None:
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if ord == "fro":
        return matrix_norm(A, "fro", (-2, -1) if dim is None else dim, keepdim, dtype=dtype)
    if isinstance(ord, str):
        raise NotImplementedError(f"fastmlp.linalg.norm: ord={ord!r} (a spectral or nuclear "
                                  "matrix norm) is not supported")
    one_dim = (dim is not None and (isinstance(dim, int) or len(dim) == 1)) or \
        (dim is None and A.ndim == 1)
    if not one_dim:
        raise NotImplementedError(f"fastmlp.linalg.norm: matrix norms with ord={ord!r} are not "
                                  "supported; pass dim= for a vector norm")
    return vector_norm(A, ord, dim, keepdim, dtype=dtype)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):  # noqa: A002
    if ord != "fro":
        raise NotImplementedError(f"fastmlp.linalg.matrix_norm: only ord='fro' is supported, got "
                                  f"{ord!r}")
    if A.ndim < 2:
        raise RuntimeError(f"linalg.matrix_norm: The input tensor A must have at least 2 "
                           f"dimensions.")
    return vector_norm(A, 2, dim, keepdim, dtype=dtype)
