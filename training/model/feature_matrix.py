"""The training run's feature matrix, held in a scratch file instead of in memory.

A run reads the same float64 features many times (each fold's scaler reads columns of its fit rows,
LightGBM bins the fit rows a batch at a time, each fold's test rows are scored), and at 25M samples x 23
features the matrix alone is 4.6 GB. It is written once, column by column, to an anonymous temporary file
(deleted by the OS when the run ends, however it ends) and read back with ``preadv`` into arrays the size
of what is asked for: the operating system's page cache keeps it warm when memory is free and lets it go
when memory is short, and the process holds one column or one batch of rows at a time. The values read
are the bytes written: training on it is bit-for-bit training on the array.
"""

from __future__ import annotations

import copy
import os
import tempfile

import numpy as np

_ITEM = np.dtype(np.float64).itemsize
CLUSTER_GAP = 4_096  # sorted rows further apart than this are read as separate runs, not one span
BLOCK_ROWS = 2_048  # rows read ahead around a single row (LightGBM's bin sample asks for rows one by one)


class FeatureMatrix:
    """An ``(n_rows, n_features)`` float64 matrix, column-major on disk: ``column(j)``, ``take(rows)``,
    ``X[rows]`` and ``X[i]`` return in-memory arrays of just those values."""

    def __init__(self, n_rows: int, n_features: int, folder: str | None = None) -> None:
        self.shape = (n_rows, n_features)
        self.dtype = np.dtype(np.float64)
        # No name on Linux (O_TMPFILE): the OS removes it when closed or when the process dies, however.
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (held open for the matrix's life; close())
        self._fd = self._file.fileno()
        os.ftruncate(self._fd, n_rows * n_features * _ITEM)
        self._block: tuple[int, np.ndarray] | None = None

    @classmethod
    def from_array(cls, values: np.ndarray, folder: str | None = None) -> FeatureMatrix:
        matrix = cls(*values.shape, folder=folder)
        for j in range(values.shape[1]):
            matrix.write_column(j, np.ascontiguousarray(values[:, j], dtype=np.float64))
        return matrix

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FeatureMatrix:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def add_column(self) -> int:
        """One more column (zeros) after the last: the file grows by a column, nothing is rewritten. Its index."""
        n_rows, n_features = self.shape
        os.ftruncate(self._fd, n_rows * (n_features + 1) * _ITEM)
        self.shape, self._block = (n_rows, n_features + 1), None
        return n_features

    def leading(self, n_features: int) -> FeatureMatrix:
        """The first ``n_features`` columns as a matrix of their own, reading the same file (column-major: a
        prefix of it). A view: closing this matrix closes it; written columns are seen by both."""
        if not 0 < n_features <= self.shape[1]:
            raise ValueError(f"{n_features} leading columns of a matrix of {self.shape[1]}")
        view = copy.copy(self)
        view.shape, view._block = (self.shape[0], n_features), None
        return view

    def write_column(self, j: int, values: np.ndarray) -> None:
        """Column ``j``, all rows (float64)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        if values.shape != (self.shape[0],):
            raise ValueError(f"column {j} has {values.shape} values, the matrix {self.shape[0]} rows")
        view, offset = memoryview(values).cast("B"), self._offset(j, 0)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self._block = None

    def column(self, j: int) -> np.ndarray:
        """Every row of column ``j``."""
        return self._read(j, 0, self.shape[0])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (positions, any order, repeats allowed) as a C-ordered ``(len(rows), n_features)`` array."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"rows outside [0, {self.shape[0]})")
        order = None if rows.size < 2 or bool(np.all(rows[1:] >= rows[:-1])) else np.argsort(rows, kind="stable")
        ordered = rows if order is None else rows[order]
        out = np.empty((len(rows), self.shape[1]))
        breaks = np.flatnonzero(np.diff(ordered) > CLUSTER_GAP) + 1
        for run in np.split(np.arange(len(ordered)), breaks) if len(ordered) else []:
            first, last = int(ordered[run[0]]), int(ordered[run[-1]])
            local = ordered[run] - first
            for j in range(self.shape[1]):
                out[run, j] = self._read(j, first, last + 1 - first)[local]
        if order is not None:
            out[order] = out.copy()
        return out

    def __getitem__(self, index) -> np.ndarray:
        """``X[rows]`` as :meth:`take`; ``X[i]`` one row, read ahead a block (rows asked for one by one in
        increasing order cost a read per block, not per row)."""
        if isinstance(index, (int, np.integer)):
            i = int(index) + (self.shape[0] if index < 0 else 0)
            if self._block is None or not (self._block[0] <= i < self._block[0] + len(self._block[1])):
                self._block = (i, self.take(np.arange(i, min(i + BLOCK_ROWS, self.shape[0]))))
            return self._block[1][i - self._block[0]].copy()
        if isinstance(index, slice):
            return self.take(np.arange(*index.indices(self.shape[0])))
        return self.take(index)

    def _offset(self, j: int, row: int) -> int:
        return (j * self.shape[0] + row) * _ITEM

    def _read(self, j: int, first: int, count: int) -> np.ndarray:
        out = np.empty(count)
        view, offset = memoryview(out).cast("B"), self._offset(j, first)
        while view:
            got = os.preadv(self._fd, [view], offset)
            if got == 0:
                raise OSError(f"the feature matrix's scratch file ended early (column {j}, row {first})")
            view, offset = view[got:], offset + got
        return out
