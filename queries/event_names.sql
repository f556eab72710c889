-- event_names: each distinct event name in the range, most frequent first. It reads the events
-- as stored, before deduplication (a repeated event does not change which names occur), and
-- the partition dates bound the scan so only the range's days are read.
-- returns: name, events
-- params: $since, $until, $date_from, $date_to
SELECT name, count(*) AS events
FROM raw_events_stored
WHERE name IS NOT NULL
  AND ($date_from IS NULL OR date >= $date_from)
  AND ($date_to IS NULL OR date <= $date_to)
  AND ($since IS NULL OR time >= $since)
  AND ($until IS NULL OR time < $until)
GROUP BY name
ORDER BY events DESC, name
