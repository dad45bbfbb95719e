"""Compiled scoring: numpy equivalents of the fitted pipelines, verified against them, for fast scores.

:func:`compile_model` turns a fitted model into a :class:`CompiledModel` that computes, from prepared
feature arrays (:func:`leadscore.data.schema.prepare_columns` /
:func:`~leadscore.data.schema.prepare_lead`), the same probability, member agreement and contributions as
the general path (``predict_proba`` on ``prepare_features`` and
:func:`leadscore.scoring.explain.contributions`), without pandas or scikit-learn in the loop. See
:mod:`leadscore.scoring.fastpath.compiled` for what is compiled and what falls back.
"""

from __future__ import annotations

from leadscore.scoring.fastpath.compiled import CompiledModel, Scores, compile_model

__all__ = ["CompiledModel", "Scores", "compile_model"]
