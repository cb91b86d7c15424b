"""The training matrix kept in a scratch file reads back exactly the array written, however it is asked."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.model import feature_matrix
from training.model.feature_matrix import FeatureMatrix

VALUES = np.random.default_rng(7).normal(size=(9_000, 4))
VALUES[::97, 2] = np.nan  # missing indicator values survive the round trip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(VALUES) - 1), max_size=300), st.booleans())
def test_any_rows_read_back_exactly(rows, ordered):
    rows = sorted(rows) if ordered else rows
    with FeatureMatrix.from_array(VALUES) as matrix:
        taken = matrix[np.array(rows, dtype=np.int64)]
        assert taken.shape == (len(rows), VALUES.shape[1]) and taken.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(taken, VALUES[rows])


def test_columns_slices_and_single_rows(monkeypatch):
    monkeypatch.setattr(feature_matrix, "BLOCK_ROWS", 100)
    with FeatureMatrix.from_array(VALUES) as matrix:
        assert len(matrix) == len(VALUES) and matrix.shape == VALUES.shape
        for j in range(VALUES.shape[1]):
            np.testing.assert_array_equal(matrix.column(j), VALUES[:, j])
        np.testing.assert_array_equal(matrix[1_000:5_000:3], VALUES[1_000:5_000:3])
        for i in (0, 99, 100, 101, 8_999, -1, 5, 4):  # within, across and back before the read-ahead block
            row = matrix[i]
            np.testing.assert_array_equal(row, VALUES[i])
            row[:] = 0.0  # a copy: the next read is not changed by it
        np.testing.assert_array_equal(matrix[4], VALUES[4])


def test_rows_outside_the_matrix_are_refused():
    import pytest

    with FeatureMatrix.from_array(VALUES[:10]) as matrix, pytest.raises(IndexError):
        matrix[np.array([3, 10])]


def test_an_added_column_and_a_view_of_the_leading_columns_share_the_file():
    """meta-label's side: one more column after the features, while fits of the features alone read a view."""
    with FeatureMatrix.from_array(VALUES) as matrix:
        baseline = matrix.leading(VALUES.shape[1])
        side = matrix.add_column()
        assert side == VALUES.shape[1] and matrix.shape == (len(VALUES), side + 1)
        np.testing.assert_array_equal(matrix.column(side), np.zeros(len(VALUES)))
        sides = np.where(VALUES[:, 0] > 0, 1.0, -1.0)
        matrix.write_column(side, sides)
        rows = np.array([5, 3, 8_000])
        np.testing.assert_array_equal(matrix[rows], np.column_stack([VALUES, sides])[rows])
        assert baseline.shape == VALUES.shape
        np.testing.assert_array_equal(baseline[rows], VALUES[rows])
        np.testing.assert_array_equal(matrix.leading(2)[rows], VALUES[rows, :2])
