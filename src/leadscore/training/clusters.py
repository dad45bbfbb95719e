"""K-means lead clusters on the engineered features, profiled for the sales team."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import QuantileTransformer

from leadscore.data.schema import TableSchema

MAX_FIT_ROWS = 20_000


@dataclass(frozen=True)
class Clusters:
    model: Pipeline
    labels: np.ndarray
    profile: pd.DataFrame    # per cluster: leads, share, conversion rate, defining traits


def _traits(X: pd.DataFrame, labels: np.ndarray, numeric: list[str], categorical: list[str],
            cluster: int, top: int = 3) -> str:
    inside = labels == cluster
    scale = X[numeric].std().replace(0, np.nan)
    shift = ((X.loc[inside, numeric].mean() - X[numeric].mean()) / scale).dropna()
    words = [f"{'high' if shift[c] > 0 else 'low'} {c}" for c in shift.abs().sort_values(ascending=False)
             .index[:top]]
    for column in categorical:
        share = X.loc[inside, column].value_counts(normalize=True)
        overall = X[column].value_counts(normalize=True)
        if len(share) and share.iloc[0] >= 1.5 * overall.get(share.index[0], 1.0) and share.iloc[0] > 0.4:
            words.append(f"{column}={share.index[0]} ({share.iloc[0]:.0%})")
    return ", ".join(words)


def lead_clusters(X: pd.DataFrame, y: pd.Series | None, schema: TableSchema, *, k: int = 5,
                  seed: int = 42) -> Clusters:
    """Cluster leads on their numeric features (median-imputed, quantile-normalised) with k-means."""
    numeric = [c for c in schema.numeric_features if c in X.columns and X[c].nunique() > 1]
    model = make_pipeline(
        SimpleImputer(strategy="median"),
        QuantileTransformer(n_quantiles=100, output_distribution="normal", random_state=seed),
        KMeans(n_clusters=k, n_init=5, random_state=seed))
    sample = X[numeric].sample(min(len(X), MAX_FIT_ROWS), random_state=seed)
    model.fit(sample)
    labels = model.predict(X[numeric])
    rows = []
    for cluster in range(k):
        inside = labels == cluster
        rows.append({
            "cluster": cluster, "leads": int(inside.sum()), "share": round(float(inside.mean()), 4),
            "conversion_rate": round(float(y[inside].mean()), 4) if y is not None else np.nan,
            "defining_traits": _traits(X, labels, numeric, schema.categorical_features, cluster),
        })
    profile = pd.DataFrame(rows).sort_values("conversion_rate", ascending=False).reset_index(drop=True)
    return Clusters(model, labels, profile)


def cluster_map(clusters: Clusters, X: pd.DataFrame, *, seed: int = 42) -> np.ndarray:
    """Two coordinates per lead for a scatter of the clusters: the first two principal components of the
    space k-means worked in (the median-imputed, quantile-normalised numeric features)."""
    space = clusters.model[:-1].transform(X[list(clusters.model.feature_names_in_)])
    components = min(2, space.shape[1], len(space))
    coordinates = PCA(n_components=components, random_state=seed).fit_transform(space)
    if components < 2:  # one feature (or lead): a line
        coordinates = np.column_stack([coordinates, np.zeros((len(space), 2 - components))])
    return coordinates
