-- online_count_presence: rows per partition date of the bound presence view, duplicates removed (snapshot fingerprint).
-- returns: date, records
-- params: none
SELECT date, count(*) AS records
FROM presence
GROUP BY date
