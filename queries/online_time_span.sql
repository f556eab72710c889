-- online_time_span: the first and the last row of the bound presence partitions (bind the first
-- and the last date: where snapshots can start and end).
-- returns: first, last
-- params: none
SELECT min(time) AS first, max(time) AS last
FROM presence
