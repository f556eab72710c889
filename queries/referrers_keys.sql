-- referrers_keys: each distinct key of _ref_visits once with its key_hash (the caller checks that
-- no hash is shared by two keys).
-- returns: key_hash, utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme,
--   ref_host, ref_path, ref_query, landing_host, landing_path
-- params: none
SELECT DISTINCT
    key_hash, utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host,
    ref_path, ref_query, landing_host, landing_path
FROM _ref_visits
