-- import_ahoy_events: one batch of Ahoy events (the Arrow table `ahoy_batch`: id, visit_token,
-- visitor_token, user_id, name, properties, time) as trail events. The event id is the source
-- row's, so importing a row twice gives the same key; `received_at` is unknown and set to the
-- event's time; properties that are not JSON (a text column) are kept as a JSON string.
-- returns: event_id, visit_token, visitor_token, user_id, name, properties, time, received_at
-- params: $id_prefix
SELECT
    $id_prefix || CAST(id AS VARCHAR) AS event_id,
    nullif(left(visit_token, 1024), '') AS visit_token,
    nullif(left(visitor_token, 1024), '') AS visitor_token,
    nullif(left(user_id, 255), '') AS user_id,
    nullif(left(name, 1024), '') AS name,
    CASE
        WHEN properties IS NULL THEN '{}'
        WHEN json_valid(properties) THEN CAST(json(properties) AS VARCHAR)
        ELSE CAST(to_json(properties) AS VARCHAR)
    END AS properties,
    time,
    time AS received_at
FROM ahoy_batch
WHERE time IS NOT NULL
ORDER BY id
