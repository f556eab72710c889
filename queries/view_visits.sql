-- visits: one row per visit token, user_id resolved through the first identity binding.
-- returns: the visits columns of docs/data-model.md
-- params: none
SELECT v.* REPLACE (coalesce(fi.user_id, v.user_id) AS user_id)
FROM raw_visits AS v
LEFT JOIN first_identity AS fi USING (visit_token)
