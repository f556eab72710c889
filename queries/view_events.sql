-- events: one row per event id, user_id resolved through the visit's first identity binding.
-- returns: the events columns of docs/data-model.md
-- params: none
SELECT e.* REPLACE (coalesce(fi.user_id, e.user_id) AS user_id)
FROM raw_events AS e
LEFT JOIN first_identity AS fi USING (visit_token)
