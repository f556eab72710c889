-- event_names: each distinct event name in the range with how many events carry it (duplicates
-- counted once per partition as the view reads them), most frequent first. The partition dates
-- bound the scan so only the range's days are read.
-- returns: name, events
-- params: $since, $until, $date_from, $date_to
SELECT name, count(*) AS events
FROM raw_events
WHERE name IS NOT NULL
  AND ($date_from IS NULL OR date >= $date_from)
  AND ($date_to IS NULL OR date <= $date_to)
  AND ($since IS NULL OR time >= $since)
  AND ($until IS NULL OR time < $until)
GROUP BY name
ORDER BY events DESC, name
