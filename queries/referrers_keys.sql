-- referrers_keys: each distinct key of _ref_groups (its `key` rows) once with its key_hash.
-- returns: key_hash, utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme,
--   ref_host, ref_path, ref_query, search_term, landing_path
-- params: none
SELECT
    key_hash, utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host,
    ref_path, ref_query, search_term, landing_path
FROM _ref_groups
WHERE kind = 'key'
