-- referrers_visits: one row per visit in range with the parts that decide its source (DESIGN.md
-- "Sources"): stored utm_* tags (else parsed from the landing page), the first known click id on
-- the landing page, the referrer's scheme, host, path (only for hosts with path rules) and query
-- (only for --by term), the landing page's host and path, and whether the visit reached the goal
-- (visits listed in the temp table _goal_visits). Text columns are '' rather than null so they join.
-- returns: visit_token, visitor_token, converted, utm_source, utm_medium, utm_campaign, utm_term,
--   click_id, ref_scheme, ref_host, ref_path, ref_query, landing_host, landing_path
-- params: $since, $until, $include_bots, $with_query, $with_landing_path, $click_re, $path_hosts
WITH v AS (
    SELECT
        visit_token,
        visitor_token,
        landing_page,
        referrer,
        utm_source, utm_medium, utm_campaign, utm_term,
        lower(regexp_extract(referrer, '^\s*([A-Za-z][A-Za-z0-9+.-]*):', 1)) AS ref_scheme,
        regexp_replace(
            lower(regexp_extract(referrer, '^\s*[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/?#:]*)', 1)),
            '^www\.', ''
        ) AS ref_host,
        contains(landing_page, '?') AS has_query
    FROM visits
    WHERE ($since IS NULL OR started_at >= $since)
      AND ($until IS NULL OR started_at < $until)
      AND ($include_bots OR device_type IS DISTINCT FROM 'Bot')
)
SELECT
    visit_token,
    visitor_token,
    visit_token IN (SELECT visit_token FROM _goal_visits) AS converted,
    lower(coalesce(nullif(trim(utm_source), ''), CASE WHEN has_query THEN
        url_decode(replace(regexp_extract(landing_page, '[?&]utm_source=([^&#]*)', 1), '+', ' ')) END, '')) AS utm_source,
    coalesce(nullif(trim(utm_medium), ''), CASE WHEN has_query THEN
        url_decode(replace(regexp_extract(landing_page, '[?&]utm_medium=([^&#]*)', 1), '+', ' ')) END, '') AS utm_medium,
    coalesce(nullif(trim(utm_campaign), ''), CASE WHEN has_query THEN
        url_decode(replace(regexp_extract(landing_page, '[?&]utm_campaign=([^&#]*)', 1), '+', ' ')) END, '') AS utm_campaign,
    CASE WHEN $with_query THEN coalesce(nullif(trim(utm_term), ''), CASE WHEN has_query THEN
        url_decode(replace(regexp_extract(landing_page, '[?&]utm_term=([^&#]*)', 1), '+', ' ')) END, '')
    ELSE '' END AS utm_term,
    CASE WHEN has_query THEN coalesce(lower(regexp_extract(landing_page, $click_re, 1)), '') ELSE '' END AS click_id,
    coalesce(ref_scheme, '') AS ref_scheme,
    coalesce(ref_host, '') AS ref_host,
    CASE WHEN list_contains($path_hosts, ref_host)
        THEN coalesce(regexp_extract(referrer, '^\s*[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(/[^?#]*)', 1), '')
        ELSE '' END AS ref_path,
    CASE WHEN $with_query THEN coalesce(regexp_extract(referrer, '\?([^#]*)', 1), '') ELSE '' END AS ref_query,
    coalesce(regexp_replace(
        lower(regexp_extract(landing_page, '^\s*[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/?#:]*)', 1)),
        '^www\.', ''
    ), '') AS landing_host,
    CASE WHEN NOT $with_landing_path THEN ''
        WHEN landing_page IS NULL THEN '(none)'
        ELSE coalesce(nullif(
            regexp_extract(landing_page, '^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)', 1), ''), '/')
    END AS landing_path
FROM v
