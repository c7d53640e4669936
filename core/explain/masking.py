"""Masked rows built by indexing: the fast path of column SHAP (core.explain.attributions).

shap's permutation explainer asks for thousands of rows that mix an explained row with
background rows column by column. Preprocessing each as a frame cost seconds per 200 rows; here
the rows and the background become model inputs once (:class:`InputLayout`), a masked row is
gathered from them, each distinct one goes through the fusion head and the trees once
(:class:`FastModel`), and a whole chunk of rows is evaluated in one batch (:class:`Recorder`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .cached_model import CachedModel

logger = logging.getLogger(__name__)


class CodedTable:
    """Columns as integer codes, so shap's numeric maskers can mix a row with background rows."""

    def __init__(self, frame: pd.DataFrame):
        self.columns = list(frame.columns)
        self.uniques = []
        self.first_rows = []  # per column: code -> the first row holding that value
        codes = []
        for column in self.columns:
            column_codes, uniques = pd.factorize(frame[column], use_na_sentinel=False)
            codes.append(column_codes)
            self.uniques.append(uniques)
            _, first = np.unique(column_codes, return_index=True)  # codes are 0..U-1, in order
            self.first_rows.append(first)
        self.codes = np.stack(codes, axis=1).astype(np.float64)  # (N, M)

    def decode(self, codes: np.ndarray, columns: list[int] | None = None) -> pd.DataFrame:
        """The table rows that ``codes`` (N, M) stand for; only ``columns`` (positions) if given,
        with ``codes`` then (N, len(columns))."""
        codes = codes.astype(np.int64)
        positions = range(len(self.columns)) if columns is None else columns
        return pd.DataFrame(
            {self.columns[j]: self.uniques[j].take(codes[:, k]) for k, j in enumerate(positions)}
        )

    def source_rows(self, codes: np.ndarray) -> np.ndarray:
        """(N, M) positions in this table of a row holding each cell's value."""
        codes = codes.astype(np.int64)
        return np.stack([first[codes[:, j]] for j, first in enumerate(self.first_rows)], axis=1)


class InputLayout:
    """Which table column each model input comes from, so masked rows are built by indexing.

    Every input of the network (a number, a date part, a cell id) and of the tree model (a
    number, a category code, a date part) is a function of one column's value: the inputs of a
    masked row are the inputs of the row or background row that lent each column. Text is the
    exception: a row's text joins several columns, so it is rebuilt per distinct combination of
    those columns' values. ``ok`` is false when the model's inputs do not match this layout (a
    preprocessing this code does not know); the caller then preprocesses frames per call.
    """

    def __init__(self, tuner, table: CodedTable):
        from ..data.preprocess import DATE_PART_NAMES

        pre = tuner.preprocessor_
        spec = tuner.spec_
        self.position = {column: j for j, column in enumerate(table.columns)}
        decoded = table.decode(table.codes)  # the values shap's masked rows are made of
        self.numeric = pre.numeric(decoded)  # (R, d_numeric_in)
        self.numeric_columns = self._positions(
            [c for c, stats in pre.numeric_stats_.items() for _ in range(1 + stats["has_missing"])]
            + [c for c in spec.columns("datetime") for _ in DATE_PART_NAMES]
        )
        self.cells = pre.cells(decoded)  # (R, n_cells) or None
        self.cell_columns = self._positions(pre.cell_columns)
        if pre.encoding_ == "cells":
            text_columns = spec.columns("text")
        else:
            text_columns = spec.columns("text") + spec.columns("categorical")
            if pre.text_numeric_:
                text_columns += list(pre.numeric_stats_)
        self.text_columns = self._positions(text_columns) if pre.reads_row_text else None
        self.trees = None
        if tuner.trees_ is not None:
            features = tuner.trees_.features_
            self.tree_dense = features.transform(decoded)  # dense, or CSR with TF-IDF text
            self.tree_columns = self._positions(
                features.numeric
                + features.categorical
                + [c for c in features.datetime for _ in DATE_PART_NAMES]
            )
            if features.vocabulary:  # the dense part here; text per combination of its columns
                self.tree_dense = self.tree_dense[:, : len(self.tree_columns)].toarray()
            self.tree_text_columns = self._positions(features.text) if features.vocabulary else None
            self.trees = tuner.trees_
        self.ok = (
            self.numeric.shape[1] == len(self.numeric_columns)
            and (self.cells is None or self.cells.shape[1] == len(self.cell_columns))
            and (self.trees is None or self.tree_dense.shape[1] == len(self.tree_columns))
        )

    def _positions(self, columns: list[str]) -> np.ndarray:
        return np.array([self.position[c] for c in columns], dtype=np.int64)

    @staticmethod
    def gather(values: np.ndarray, sources: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """values (R, F), sources (N, M) -> (N, F): input f from row ``sources[:, columns[f]]``."""
        return values[sources[:, columns], np.arange(len(columns))]


class FastModel:
    """The prediction function over coded rows, built from inputs computed once (see
    :class:`InputLayout`): no per-sample preprocessing, each distinct masked row evaluated once,
    the trees on a prebuilt matrix.

    With per-number embeddings (the cells encoding), the fusion head's whole input is per column
    too: each column's embedded block is computed once per row and masked rows are assembled by
    indexing, so only the head runs per masked row. A check on mixed rows at start-up compares
    that with the model's own ``fuse``; if they differ, ``fuse`` runs per call instead.
    """

    def __init__(self, model: CachedModel, table: CodedTable, layout: InputLayout):
        self.model, self.table, self.layout = model, table, layout
        self.blocks = self._head_blocks()

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        import torch

        tuner, layout, model = self.model.tuner, self.layout, self.model
        distinct, inverse = np.unique(codes, axis=0, return_inverse=True)  # (U, M), (N,)
        sources = self.table.source_rows(distinct)  # (U, M)
        pooled = None
        if layout.text_columns is not None:
            pooled = torch.from_numpy(model.embed(self._row_texts(distinct)))  # (U, d)
        with torch.no_grad():
            if self.blocks is not None:
                outputs = tuner.model_.head(self._head_input(sources, pooled).to(model.device))
            else:
                outputs = self._fuse(sources, pooled)
            outputs = outputs.float().cpu().numpy()  # (U, n_outputs)
        if layout.trees is not None:
            from ..model.trees import apply_blend

            outputs = apply_blend(tuner.blend_, outputs, self._tree_outputs(distinct, sources))
        model.model_rows += len(codes)
        predictions = tuner.outputs_to_predictions(outputs).astype(np.float64)
        predictions = predictions if predictions.ndim == 1 else predictions[:, model.output_index]
        return predictions[inverse.reshape(-1)]

    def _fuse(self, sources: np.ndarray, pooled):
        """The model's own fusion of gathered inputs (B, n_outputs)."""
        import torch

        layout, device = self.layout, self.model.device
        numeric = torch.from_numpy(layout.gather(layout.numeric, sources, layout.numeric_columns))
        cells = None
        if layout.cells is not None:
            cells = torch.from_numpy(layout.gather(layout.cells, sources, layout.cell_columns))
            cells = cells.to(device)
        pooled = None if pooled is None else pooled.to(device)
        return self.model.tuner.model_.fuse(pooled, numeric.to(device), cells)

    def _head_blocks(self) -> list[tuple[int, slice, np.ndarray]] | None:
        """(column position, slice of the head's input, its values per table row (R, w)) per
        embedded input; None when the head's input is not a per-column concatenation."""
        import torch

        from ..model.fusion import hidden_size

        net, layout, device = self.model.tuner.model_, self.layout, self.model.device
        numbered = net.numeric_encoder is not None
        if (numbered and not net.numeric_bins) or not (numbered or net.n_cell_columns):
            return None  # one encoder over all numbers, or nothing per column
        parts = []  # (column positions, embeddings (R, n, w))
        with torch.no_grad():
            if numbered:
                numeric = torch.from_numpy(layout.numeric).to(device)
                parts.append((layout.numeric_columns, net.numeric_encoder(numeric.float())))
            if net.n_cell_columns:
                cells = torch.from_numpy(layout.cells).to(device)
                parts.append((layout.cell_columns, net.cell_vectors(cells)))
        self.text_width = hidden_size(net.backbone) if net.reads_row_text else 0
        blocks, start = [], self.text_width
        for columns, embedded in parts:
            embedded = embedded.float().cpu().numpy()
            for k, column in enumerate(columns):
                width = embedded.shape[2]
                blocks.append((int(column), slice(start, start + width), embedded[:, k]))
                start += width
        self.width = start
        self.blocks = blocks
        # Check on rows that mix the table's rows column by column.
        n_rows, n_columns = len(layout.numeric), len(self.table.columns)
        mixed = (np.arange(min(n_rows, 8))[:, None] + np.arange(n_columns)[None, :]) % n_rows
        pooled = torch.zeros((len(mixed), self.text_width)) if self.text_width else None
        with torch.no_grad():
            expected = self._fuse(mixed, pooled).float().cpu()
            try:
                got = net.head(self._head_input(mixed, pooled).to(device)).float().cpu()
            except RuntimeError:  # the head's input has another width
                got = None
        if got is None or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            logger.warning("the fusion head's input is not per column: running fuse per call")
            return None
        return blocks

    def _head_input(self, sources: np.ndarray, pooled):
        """The fusion head's input (B, width): the text vector and each column's blocks."""
        import torch

        fused = np.empty((len(sources), self.width), dtype=np.float32)
        if self.text_width:
            fused[:, : self.text_width] = pooled.float().numpy()
        for column, where, values in self.blocks:
            fused[:, where] = values[sources[:, column]]
        dtype = next(self.model.tuner.model_.head.parameters()).dtype
        return torch.from_numpy(fused).to(dtype)

    def _combinations(self, codes: np.ndarray, columns: np.ndarray):
        """The distinct combinations of ``columns``' values as a frame, and each row's one."""
        if not len(columns):  # a text made of no column ("(no text)"): one combination
            return pd.DataFrame(index=range(1)), np.zeros(len(codes), dtype=np.int64)
        combos, inverse = np.unique(codes[:, columns], axis=0, return_inverse=True)
        return self.table.decode(combos, list(columns)), inverse.reshape(-1)

    def _row_texts(self, codes: np.ndarray) -> list[str]:
        frame, inverse = self._combinations(codes, self.layout.text_columns)
        texts = self.model.tuner.preprocessor_.texts(frame)
        return [texts[i] for i in inverse]

    def _tree_outputs(self, codes: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """The tree model's raw outputs (as TreeModel.raw_outputs) from the prebuilt inputs."""
        layout = self.layout
        x = layout.gather(layout.tree_dense, sources, layout.tree_columns)
        if layout.tree_text_columns is not None:
            import scipy.sparse as sp

            x = sp.hstack([sp.csr_matrix(x), self._tree_text(codes)]).tocsr()
        return layout.trees.raw_outputs_of_features(x)

    def _tree_text(self, codes: np.ndarray):
        """The TF-IDF part (N, V) of the tree model's inputs: its transform, once per distinct
        combination of the text columns (the other columns are placeholders, then dropped)."""
        frame, inverse = self._combinations(codes, self.layout.tree_text_columns)
        full = self.table.decode(np.zeros((len(frame), len(self.table.columns))))
        for column in frame.columns:
            full[column] = frame[column].to_numpy()
        matrix = self.layout.trees.features_.transform(full).tocsr()
        return matrix[:, self.layout.tree_dense.shape[1] :][inverse]


class Recorder:
    """A stand-in model for shap: notes the rows it is asked for, then answers them in order.

    Replayed calls are checked against the recorded ones: should anything else have drawn from
    numpy's global random state in between (another thread), shap asks for other rows, and those
    go to the model directly instead.
    """

    def __init__(self):
        self._calls: list[np.ndarray] = []
        self._outputs: list[np.ndarray] | None = None
        self._next = 0
        self._predict: Callable[[np.ndarray], np.ndarray] | None = None

    def record(self) -> None:
        self._calls, self._outputs = [], None

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray]) -> None:
        """All recorded rows through ``predict`` in one call; shap's next run replays them."""
        outputs = predict(np.concatenate(self._calls)) if self._calls else np.zeros(0)
        self._outputs = np.split(outputs, np.cumsum([len(c) for c in self._calls])[:-1])
        self._next, self._predict = 0, predict

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        if self._outputs is None:
            self._calls.append(np.array(codes, copy=True))
            return np.zeros(len(codes))
        k, self._next = self._next, self._next + 1
        if k < len(self._calls) and np.array_equal(self._calls[k], codes):
            return self._outputs[k]
        return self._predict(codes)
