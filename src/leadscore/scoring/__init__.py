"""The score of a lead: the Scorer, exact reasons, the compiled fast path, batch runs, SQL sources and sinks,
Dask.
"""
