-- online_count_events: rows per partition date of the bound events view, duplicates removed (snapshot fingerprint).
-- returns: date, records
-- params: none
SELECT date, count(*) AS records
FROM events
GROUP BY date
