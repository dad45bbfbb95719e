"""Compiled scoring: numpy equivalents of the fitted pipelines, verified against them, for fast scores.

:func:`compile_model` turns a fitted model into a :class:`CompiledModel` that computes, from prepared
feature arrays (:func:`leadscore.schema.prepare_columns` / :func:`~leadscore.schema.prepare_lead`), the
same probability, member agreement and contributions as the general path (``predict_proba`` on
``prepare_features`` and :func:`leadscore.explain.contributions`), without pandas or scikit-learn in the
loop. See :mod:`leadscore.fastpath.compiled` for what is compiled and what falls back.
"""

from __future__ import annotations

from leadscore.fastpath.compiled import CompiledModel, Scores, compile_model

__all__ = ["CompiledModel", "Scores", "compile_model"]
