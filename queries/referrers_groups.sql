-- referrers_groups: the visits in range folded in one scan into three kinds of rows: `visitor`,
-- one row per (key_hash, visitor_token) with its visits and goal conversions; `key`, each distinct
-- key once with its key_hash (the caller checks that no hash is shared by two keys); `site`, each
-- distinct landing host (the site's own hosts by default; '' only without $with_landing_host).
-- A visit's key holds the parts that decide its source (docs/reports.md, Referrers): the utm_* tags, the
-- click id, the referrer's scheme, host, path (only for hosts that may have path rules, matched by
-- $path_re) and search term or query (only for --by term), and the landing page's path (only for
-- --by landing_page). Rows with stored source facts (referrer_kind not null, docs/data-model.md)
-- give them from short columns; older rows have them worked out from the URLs here: utm_* tags
-- parsed from the landing page where the stored column is empty, the first known click id by
-- $click_re, the referrer's scheme and query (then `#` and its fragment when it has one).
-- $click_from_url and $query_from_url make every row read the URLs (a --referrer-db list knows
-- click ids or search parameters the stored facts do not). Whether a visit reached the goal comes from the temp table _goal_visits; without a goal
-- the caller swaps that fixed fragment for `false`, so visit tokens are not read. Text columns
-- are '' rather than null. No per-visit row is materialised: the scan feeds the three groupings.
-- returns: kind, key_hash, visitor_token, visits, conversions, utm_source, utm_medium,
--   utm_campaign, utm_term, click_id, ref_scheme, ref_host, ref_path, ref_query, search_term,
--   landing_path, landing_host
-- params: $since, $until, $include_bots, $with_query, $with_landing_path, $with_landing_host, $click_re, $path_re, $click_from_url, $query_from_url
WITH v AS (
    SELECT
        visit_token,
        visitor_token,
        landing_page,
        referrer,
        referrer_kind IS NULL AS old_row,
        referrer_kind,
        click_id,
        search_term,
        utm_source, utm_medium, utm_campaign, utm_term,
        CASE WHEN referrer_kind IN ('none', 'other') THEN ''
             ELSE coalesce(referring_domain, split_part(referrer, '/', 3), '') END AS ref_authority
    FROM visits
    WHERE ($since IS NULL OR started_at >= $since)
      AND ($until IS NULL OR started_at < $until)
      AND ($include_bots OR device_type IS DISTINCT FROM 'Bot')
),
keyed AS (
    SELECT
        visitor_token,
        (visit_token IN (SELECT visit_token FROM _goal_visits)) AS converted,
        lower(coalesce(nullif(trim(utm_source), ''), CASE WHEN old_row AND contains(landing_page, 'utm_') THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_source=([^&#]*)', 1), '+', ' ')) END, '')) AS utm_source,
        coalesce(nullif(trim(utm_medium), ''), CASE WHEN old_row AND contains(landing_page, 'utm_') THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_medium=([^&#]*)', 1), '+', ' ')) END, '') AS utm_medium,
        coalesce(nullif(trim(utm_campaign), ''), CASE WHEN old_row AND contains(landing_page, 'utm_') THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_campaign=([^&#]*)', 1), '+', ' ')) END, '') AS utm_campaign,
        CASE WHEN $with_query THEN coalesce(nullif(trim(utm_term), ''), CASE WHEN old_row AND contains(landing_page, 'utm_') THEN
            url_decode(replace(regexp_extract(landing_page, '[?&]utm_term=([^&#]*)', 1), '+', ' ')) END, '')
        ELSE '' END AS utm_term,
        CASE WHEN NOT (old_row OR $click_from_url) THEN coalesce(click_id, '')
             WHEN contains(landing_page, '?') THEN coalesce(lower(regexp_extract(landing_page, $click_re, 1)), '')
             ELSE '' END AS click_id,
        CASE WHEN referrer_kind = 'web' THEN 'https'
             WHEN referrer_kind = 'app' THEN 'android-app'
             WHEN NOT old_row THEN ''
             WHEN starts_with(referrer, 'https://') THEN 'https'
             WHEN starts_with(referrer, 'http://') THEN 'http'
             WHEN contains(referrer, ':') THEN left(split_part(referrer, ':', 1), 40)
             ELSE '' END AS ref_scheme,
        ref_authority AS ref_host,
        CASE WHEN $path_re <> '' AND regexp_matches(ref_authority, $path_re)
            THEN coalesce(regexp_extract(referrer, '^\s*[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(/[^?#]*)', 1), '')
            ELSE '' END AS ref_path,
        CASE WHEN $with_query AND (old_row OR $query_from_url)
            THEN coalesce(regexp_extract(referrer, '^[^?#]*\?([^#]*)', 1), '')
                || coalesce(regexp_extract(referrer, '(#.*)$', 1), '') ELSE '' END AS ref_query,
        CASE WHEN $with_query AND NOT (old_row OR $query_from_url)
            THEN coalesce(search_term, '') ELSE '' END AS search_term,
        CASE WHEN $with_landing_host THEN coalesce(split_part(landing_page, '/', 3), '') ELSE '' END
            AS landing_host,
        CASE WHEN NOT $with_landing_path THEN ''
            WHEN landing_page IS NULL THEN '(none)'
            ELSE coalesce(nullif(
                regexp_extract(landing_page, '^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)', 1), ''), '/')
        END AS landing_path
    FROM v
),
hashed AS (
    SELECT
        *,
        hash(utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host,
             ref_path, ref_query, search_term, landing_path) AS key_hash
    FROM keyed
)
SELECT
    CASE GROUPING(visitor_token, utm_source, landing_host)
        WHEN 3 THEN 'visitor' WHEN 5 THEN 'key' ELSE 'site' END AS kind,
    key_hash,
    visitor_token,
    count(*) AS visits,
    count(*) FILTER (WHERE converted) AS conversions,
    utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host, ref_path,
    ref_query, search_term, landing_path, landing_host
FROM hashed
GROUP BY GROUPING SETS (
    (key_hash, visitor_token),
    (key_hash, utm_source, utm_medium, utm_campaign, utm_term, click_id, ref_scheme, ref_host,
     ref_path, ref_query, search_term, landing_path),
    (landing_host)
)
