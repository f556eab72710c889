-- referrers_visits: one row per visit in range with the parts that decide its source (DESIGN.md
-- "Sources"), kept raw and cheap to compute (Python normalises the few distinct values): stored
-- utm_* tags (else parsed from the landing page), the first known click id on the landing page,
-- the referrer's scheme, authority, path (only for hosts with path rules) and query (only for
-- --by term), the landing page's authority and path (only for --by landing_page), whether the
-- visit reached the goal (visits listed in the temp table _goal_visits; without a goal the caller
-- swaps that fixed fragment for `false`, so visit tokens are not read), and key_hash, a hash of
-- the key columns. The referrer's authority is the stored referring_domain where there is one.
-- Text columns are '' rather than null.
-- returns: visitor_token, converted, key_hash, utm_source, utm_medium, utm_campaign,
--   utm_term, click_id, ref_scheme, ref_host, ref_path, ref_query, landing_host, landing_path
-- params: $since, $until, $include_bots, $with_query, $with_landing_path, $click_re, $path_hosts
WITH v AS (
    SELECT
        visit_token,
        visitor_token,
        landing_page,
        referrer,
        utm_source, utm_medium, utm_campaign, utm_term,
        CASE WHEN starts_with(referrer, 'https://') THEN 'https'
             WHEN starts_with(referrer, 'http://') THEN 'http'
             WHEN contains(referrer, ':') THEN left(split_part(referrer, ':', 1), 40)
             ELSE '' END AS ref_scheme,
        coalesce(referring_domain, split_part(referrer, '/', 3)) AS ref_authority,
        contains(landing_page, '?') AS has_query,
        contains(landing_page, 'utm_') AS has_utm
    FROM visits
    WHERE ($since IS NULL OR started_at >= $since)
      AND ($until IS NULL OR started_at < $until)
      AND ($include_bots OR device_type IS DISTINCT FROM 'Bot')
),
keyed AS (
    SELECT
        visitor_token,
        (visit_token IN (SELECT visit_token FROM _goal_visits)) AS converted,
        lower(coalesce(nullif(trim(utm_source), ''), CASE WHEN has_utm THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_source=([^&#]*)', 1), '+', ' ')) END, '')) AS utm_source,
        coalesce(nullif(trim(utm_medium), ''), CASE WHEN has_utm THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_medium=([^&#]*)', 1), '+', ' ')) END, '') AS utm_medium,
        coalesce(nullif(trim(utm_campaign), ''), CASE WHEN has_utm THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_campaign=([^&#]*)', 1), '+', ' ')) END, '') AS utm_campaign,
        CASE WHEN $with_query THEN coalesce(nullif(trim(utm_term), ''), CASE WHEN has_utm THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_term=([^&#]*)', 1), '+', ' ')) END, '')
        ELSE '' END AS utm_term,
        CASE WHEN has_query THEN coalesce(lower(regexp_extract(landing_page, $click_re, 1)), '') ELSE '' END AS click_id,
        coalesce(ref_scheme, '') AS ref_scheme,
        coalesce(ref_authority, '') AS ref_host,
        CASE WHEN len($path_hosts) > 0 AND list_contains($path_hosts, lower(ref_authority))
            THEN coalesce(regexp_extract(referrer, '^\s*[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(/[^?#]*)', 1), '')
            ELSE '' END AS ref_path,
        CASE WHEN $with_query THEN coalesce(regexp_extract(referrer, '\?([^#]*)', 1), '') ELSE '' END AS ref_query,
        coalesce(split_part(landing_page, '/', 3), '') AS landing_host,
        CASE WHEN NOT $with_landing_path THEN ''
            WHEN landing_page IS NULL THEN '(none)'
            ELSE coalesce(nullif(
                regexp_extract(landing_page, '^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)', 1), ''), '/')
        END AS landing_path
    FROM v
)
SELECT
    visitor_token,
    converted,
    hash(utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host,
         ref_path, ref_query, landing_host, landing_path) AS key_hash,
    utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host,
    ref_path, ref_query, landing_host, landing_path
FROM keyed
