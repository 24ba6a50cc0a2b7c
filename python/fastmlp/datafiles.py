"""Reading the data files of the command line: CSV, Parquet, Feather/Arrow IPC and NPZ.

CSV is parsed by pyarrow's multi-threaded reader when pyarrow is installed, else by numpy's C
``loadtxt`` (a whole-file call, no Python loop per cell); text columns are found per column.
Parquet and Feather need pyarrow (``pip install fastmlp[arrow]``).

:func:`read_table` returns ``{"columns": [names], "data": (n, k) float64}`` (or ``{"X", "y"}`` for
an NPZ holding those arrays). A column of text is either one-hot encoded (``one_hot=True``: a
``name=value`` column per category, categories sorted, or the given ``categories``) or refused with
the column named. Errors are :class:`DataFileError` with a one-line message.
"""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import numpy as np

__all__ = ["DataFileError", "read_table", "CSV_SUFFIXES", "PARQUET_SUFFIXES", "FEATHER_SUFFIXES"]

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
FEATHER_SUFFIXES = (".feather", ".arrow", ".ipc")


class DataFileError(ValueError):
    """A data file that cannot be read as a table (the message names the file and the cause)."""


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    return pyarrow


def read_table(path, columns=None, one_hot=False, categories=None, raw=()):
    """The table in ``path``; ``columns``: read only these (in this order; None: all).

    ``one_hot``: encode text columns (else a text column is an error naming it). ``categories``:
    {column: [values]} to encode with (a model's training categories; an unseen value is an error).
    ``raw``: column names returned as they are (numbers or text, unencoded) in
    ``table["raw"][name]`` and left out of ``columns``/``data`` (a classifier's label column; for
    an NPZ of X and y, ``"y"`` returns y unconverted).
    """
    raw = tuple(raw or ())
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"{path}: no such file")
    if p.is_dir():
        raise DataFileError(f"{path}: is a directory, expected a .csv, .parquet, .feather or .npz file")
    suf = p.suffix.lower()
    if suf == ".npz":
        table = _read_npz(p, path, raw, columns)
        if "X" in table:
            if columns:
                raise DataFileError(f"{path}: --columns needs named columns; this file holds arrays X and y")
            X, y = table["X"], table["y"]
            _check_f32_range(X, [f"x{i}" for i in range(X.shape[1])], path, None)
            if "y" in raw:
                table["raw"] = {"y": y}
            else:
                _check_f32_range(y.reshape(len(y), -1), ["y"] if y.ndim == 1 else
                                 [f"y{i}" for i in range(y.shape[1])], path, None)
            return table
        names, cols = table["columns"], table["cols"]
    elif suf in PARQUET_SUFFIXES or suf in FEATHER_SUFFIXES:
        names, cols = _read_arrow_file(p, path, suf, columns)
    else:
        names, cols = _read_csv(p, path)
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataFileError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)})")
        idx = {n: i for i, n in enumerate(names)}
        names, cols = list(columns), [cols[idx[c]] for c in columns]
    kept = {}
    if raw:
        missing = [c for c in raw if c not in names]
        if missing:
            raise DataFileError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)})")
        kept = {n: c for n, c in zip(names, cols) if n in raw}
        pairs = [(n, c) for n, c in zip(names, cols) if n not in raw]
        if not pairs:
            raise DataFileError(f"{path}: no feature columns left besides {', '.join(raw)}")
        names, cols = [n for n, _ in pairs], [c for _, c in pairs]
    out = _encode(names, cols, path, one_hot, categories)
    if kept:
        out["raw"] = kept
    data = out.get("data") if isinstance(out, dict) else None
    if data is not None and data.dtype.kind == "f":
        # CSV rows are named by their file line (the header is line 1)
        first_line = 2 if suf not in (".npz",) + tuple(PARQUET_SUFFIXES) + tuple(FEATHER_SUFFIXES) else None
        _check_f32_range(data, out.get("columns", names), path, first_line)
    return out


_F32_MAX = float(np.finfo(np.float32).max)


def _check_f32_range(data, columns, path, first_line):
    """DataFileError naming the first value (column, row) whose magnitude overflows float32 (the
    precision fastmlp trains in); NaN/inf are left to the callers' checks. ``first_line``: the
    file line of the first data row (CSV), or None (0-based row indices)."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(data) > _F32_MAX
    if not bad.any():
        return
    r, c = (int(v[0]) for v in np.nonzero(bad))
    where = f"row {first_line + r}" if first_line is not None else f"row index {r}"
    raise DataFileError(f"{path}: {where}, column '{columns[c]}': {data[r, c]!r} overflows "
                        f"float32 (largest finite value {_F32_MAX:.6g}); rescale the data")


# ---- encoding --------------------------------------------------------------------------------

def _encode(names, cols, path, one_hot, categories):
    out_names, out_cols, cats = [], [], {}
    categories = categories or {}
    for name, col in zip(names, cols):
        if col.dtype.kind in "fiub":
            if name in categories:
                raise DataFileError(f"{path}: column {name!r} was text when the model was trained, "
                                    f"now it holds numbers")
            out_names.append(name)
            out_cols.append(col.astype(np.float64, copy=False))
            continue
        col = col.astype(str)
        if name in categories:
            values = np.asarray(categories[name], dtype=str)
        elif not one_hot:
            sample = str(next((v for v in col if v.strip()), ""))
            raise DataFileError(f"{path}: column {name!r} holds text (e.g. {sample!r}); pass --one-hot "
                                f"to encode it, or leave it out with --columns")
        else:
            values = np.unique(col)
        known = np.isin(col, values)
        if not known.all():
            bad = str(col[~known][0])
            raise DataFileError(f"{path}: column {name!r} holds {bad!r}, a category the model was not "
                                f"trained on (known: {', '.join(values[:10])})")
        cats[name] = values.tolist()
        codes = np.searchsorted(values, col) if np.all(values[:-1] <= values[1:]) else \
            np.array([{v: i for i, v in enumerate(values)}[v] for v in col])
        onehot = np.zeros((len(col), len(values)))
        onehot[np.arange(len(col)), codes] = 1.0
        for j, v in enumerate(values):
            out_names.append(f"{name}={v}")
            out_cols.append(onehot[:, j])
    if not out_cols or len(out_cols[0]) == 0:
        raise DataFileError(f"{path}: no data rows")
    data = np.column_stack(out_cols)
    table = {"columns": out_names, "data": data}
    if cats:
        table["categories"] = cats
    return table


# ---- NPZ -------------------------------------------------------------------------------------

def _read_npz(p, path, raw=(), columns=None):
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
        raise DataFileError(f"{path}: not a readable .npz file ({e})") from None
    for k, a in arrays.items():
        if a.dtype.kind == "c":
            raise DataFileError(f"{path}: array '{k}' is complex (dtype {a.dtype}); fastmlp trains "
                                "on real numbers")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool or a.dtype.kind == "U"):
            raise DataFileError(f"{path}: array '{k}' is not numeric (dtype {a.dtype})")
    if "X" in arrays and "y" in arrays:
        X, y = arrays["X"], arrays["y"]
        if X.dtype.kind == "U" or (y.dtype.kind == "U" and "y" not in raw):
            raise DataFileError(f"{path}: arrays X and y are not numeric")
        if X.ndim != 2:
            raise DataFileError(f"{path}: X must be 2-D (samples, features), got shape {X.shape}")
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise DataFileError(f"{path}: y must have {X.shape[0]} rows like X, got shape {y.shape}")
        return {"X": X.astype(np.float64), "y": y if "y" in raw else y.astype(np.float64)}
    cols = [k for k, a in arrays.items() if a.ndim == 1]
    if not cols or len(cols) != len(arrays):
        raise DataFileError(f"{path}: expected arrays 'X' and 'y', or 1-D named columns")
    n = {arrays[k].shape[0] for k in cols}
    if len(n) != 1:
        raise DataFileError(f"{path}: the columns have different lengths {sorted(n)}")
    for k in cols:
        if arrays[k].dtype.kind == "U" and k not in raw and (not columns or k in columns):
            raise DataFileError(f"{path}: array '{k}' is not numeric (dtype {arrays[k].dtype})")
    return {"columns": cols, "cols": [arrays[k] for k in cols]}


# ---- Arrow: Parquet, Feather, and pyarrow's CSV reader ---------------------------------------

def _arrow_columns(table, path):
    import pyarrow as pa
    import pyarrow.compute as pc

    names, cols = [], []
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_dictionary(t):
            col = pc.cast(col, pa.string())
            t = col.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            arr = col.to_numpy() if col.null_count == 0 else \
                pc.cast(col, pa.float64()).fill_null(float("nan")).to_numpy()
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = np.asarray(col.fill_null("").to_numpy(zero_copy_only=False), dtype=str)
        elif pa.types.is_null(t):
            arr = np.full(len(col), np.nan)
        else:
            raise DataFileError(f"{path}: column {name!r} has type {t}, not numbers or text")
        names.append(name)
        cols.append(arr)
    return names, cols


def _read_arrow_file(p, path, suf, columns):
    if _pyarrow() is None:
        kind = "Parquet" if suf in PARQUET_SUFFIXES else "Feather"
        raise DataFileError(f"{path}: reading {kind} files needs pyarrow: pip install fastmlp[arrow]")
    try:
        if suf in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            schema = pq.read_schema(p)
            if columns:
                _check_columns(columns, schema.names, path)
            table = pq.read_table(p, columns=list(columns) if columns else None)
        else:
            import pyarrow.feather as feather

            if columns:
                _check_columns(columns, feather.read_table(p, memory_map=True).schema.names, path)
            table = feather.read_table(p, columns=list(columns) if columns else None)
    except DataFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
        raise DataFileError(f"{path}: not a readable {suf[1:]} file ({type(e).__name__}: {e})") from None
    if table.num_rows == 0:
        raise DataFileError(f"{path}: no data rows")
    return _arrow_columns(table, path)


def _check_columns(columns, names, path):
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataFileError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)})")


# ---- CSV -------------------------------------------------------------------------------------

def _header(p, path):
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # a leading BOM is not in the header
            first = f.readline()
            while first and not first.strip():
                first = f.readline()
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a text CSV file") from None
    if not first:
        raise DataFileError(f"{path}: empty file")
    try:
        header = next(csv.reader([first]))
    except csv.Error as e:
        raise DataFileError(f"{path}: malformed CSV header ({e})") from None
    header = [h.strip() for h in header]
    if not header or any(h == "" for h in header):
        raise DataFileError(f"{path}: the first row must be a header naming every column")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataFileError(f"{path}: the header names column {dup!r} twice")
    return header


def _read_csv(p, path):
    header = _header(p, path)
    if _pyarrow() is not None:
        return header, _read_csv_arrow(p, path, header)
    return header, _read_csv_numpy(p, path, header)


def _read_csv_arrow(p, path, header):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(p, read_options=pcsv.ReadOptions(column_names=header, skip_rows=1),
                              parse_options=pcsv.ParseOptions(ignore_empty_lines=True),
                              convert_options=pcsv.ConvertOptions(
                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as e:
        msg = str(e)
        if "columns" in msg and "Expected" in msg:
            row = _bad_row(p, len(header))
            raise DataFileError(f"{path}: row {row[0]} has {row[1]} fields, the header has "
                                f"{len(header)}" if row else f"{path}: malformed CSV ({msg})") from None
        if "UTF8" in msg or "utf8" in msg.lower():
            raise DataFileError(f"{path}: not a text CSV file") from None
        raise DataFileError(f"{path}: malformed CSV ({msg.splitlines()[0]})") from None
    if table.num_rows == 0:
        raise DataFileError(f"{path}: no data rows after the header")
    names, cols = _arrow_columns(table, path)
    return [_numeric_or_text(c, name, p, path) for name, c in zip(names, cols)]


def _read_csv_numpy(p, path, header):
    k = len(header)
    try:
        with open(p, newline="") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a text CSV file") from None
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:  # the common case: all numbers, one C call
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
            data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
        if data.size and data.shape[1] == k:
            return [data[:, j] for j in range(k)]
    except ValueError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
            raw = np.loadtxt(io.StringIO(body), delimiter=",", dtype=str, ndmin=2, quotechar='"')
    except ValueError:
        row = _bad_row(p, k)
        if row:
            raise DataFileError(f"{path}: row {row[0]} has {row[1]} fields, the header has {k}") from None
        raise DataFileError(f"{path}: malformed CSV") from None
    if raw.size == 0:
        raise DataFileError(f"{path}: no data rows after the header")
    if raw.shape[1] != k:
        raise DataFileError(f"{path}: the rows have {raw.shape[1]} fields, the header has {k}")
    return [_numeric_or_text(np.char.strip(raw[:, j]), header[j], p, path) for j in range(k)]


def _numeric_or_text(col, name, p, path):
    """A column as float64 when every cell is a number; a text column as str (for one-hot
    encoding) when no cell is; a mix is an error naming the first bad cell's row."""
    if col.dtype.kind in "fiub":
        return col
    try:
        return col.astype(np.float64)
    except ValueError:
        pass
    numeric = np.char.isnumeric(np.char.lstrip(np.char.replace(np.char.replace(col, ".", ""),
                                                               "e", ""), "+-"))
    if numeric.any():  # mostly numbers with a bad cell: name it
        for i, v in enumerate(col):
            try:
                float(v)
            except ValueError:
                raise DataFileError(f"{path}: row {i + 2}, column '{name}': cannot read {str(v)!r} as a "
                                    f"number") from None
    return col


def _bad_row(p, k):
    """(row number, fields) of the first data row whose field count is not k (error path only)."""
    with open(p, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for i, rec in enumerate(reader, start=2):
            if rec and any(c.strip() for c in rec) and len(rec) != k:
                return i, len(rec)
    return None
