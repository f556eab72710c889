-- online_count_identities: rows per partition date of the bound identities view, duplicates removed (snapshot fingerprint).
-- returns: date, records
-- params: none
SELECT date, count(*) AS records
FROM identities
GROUP BY date
