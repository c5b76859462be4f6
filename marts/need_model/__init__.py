"""The need model (需求预测): predicts residents' needs before they ask and forecasts appeals
per grid cell, explains every score, and publishes them as marts (issue 16).

Plain modules over polars frames and DuckDB relations, tested without Dagster; ``pipelines/``
wires them. The shared vocabulary is :mod:`marts.need_model.spec`.
"""
