-- grid_demand_forecast (网格诉求需求预测): the expected number of appeals per grid cell and
-- category in the week after the cut-off, with the model version and the cut-off. Made by the
-- model, not by SQL: the scoring step hands the forecast to marts.publish.publish_frame as
-- `grid_forecast_frame`; this query only publishes it as the catalogue describes. Read by the
-- street's operations centre, community and grid workers and the residents' front ends.
SELECT
    f.grid_code,
    f.category,
    f.week_start,
    f.expected_appeals,
    f.model_version,
    f.cutoff
FROM grid_forecast_frame AS f
