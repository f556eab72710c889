-- referrers_keys: each distinct key of _ref_visits once, with whether its key_hash is shared by
-- two different keys (then the report refuses rather than mixing them up).
-- returns: key_hash, collides, utm_source, utm_medium, utm_campaign, utm_term, click_id,
--   ref_scheme, ref_host, ref_path, ref_query, landing_host, landing_path
-- params: none
SELECT
    key_hash,
    min(check_hash) <> max(check_hash) AS collides,
    any_value(utm_source) AS utm_source,
    any_value(utm_medium) AS utm_medium,
    any_value(utm_campaign) AS utm_campaign,
    any_value(utm_term) AS utm_term,
    any_value(click_id) AS click_id,
    any_value(ref_scheme) AS ref_scheme,
    any_value(ref_host) AS ref_host,
    any_value(ref_path) AS ref_path,
    any_value(ref_query) AS ref_query,
    any_value(landing_host) AS landing_host,
    any_value(landing_path) AS landing_path
FROM _ref_visits
GROUP BY key_hash
