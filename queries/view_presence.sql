-- presence: per-client transitions, user_id resolved through the visit's first identity binding.
-- returns: the presence columns of docs/data-model.md
-- params: none
SELECT p.* REPLACE (coalesce(fi.user_id, p.user_id) AS user_id)
FROM raw_presence AS p
LEFT JOIN first_identity AS fi USING (visit_token)
