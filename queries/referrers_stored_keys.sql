-- referrers_stored_keys: the distinct source keys of the visits in range, from the stored source
-- facts only (docs/data-model.md; no URL is read), each with its key_hash, and the distinct
-- landing hosts (`site` rows: the site's own hosts by default). A key whose referrer_kind is null
-- comes from rows stored before the facts existed: the caller then reads the URLs instead
-- (referrers_groups). Term columns are null unless $with_query.
-- returns: kind, key_hash, utm_source, utm_medium, utm_campaign, utm_term, click_id,
--   referrer_kind, referring_domain, referrer_path_rule, search_term, landing_host
-- params: $since, $until, $include_bots, $with_query
WITH v AS (
    SELECT
        utm_source, utm_medium, utm_campaign,
        CASE WHEN $with_query THEN utm_term END AS utm_term,
        click_id, referrer_kind, referring_domain, referrer_path_rule,
        CASE WHEN $with_query THEN search_term END AS search_term,
        landing_host
    FROM visits
    WHERE ($since IS NULL OR started_at >= $since)
      AND ($until IS NULL OR started_at < $until)
      AND ($include_bots OR device_type IS DISTINCT FROM 'Bot')
)
SELECT
    CASE WHEN GROUPING(landing_host) = 1 THEN 'key' ELSE 'site' END AS kind,
    hash(utm_source, utm_medium, utm_campaign, utm_term, click_id, referrer_kind,
         referring_domain, referrer_path_rule, search_term) AS key_hash,
    utm_source, utm_medium, utm_campaign, utm_term, click_id, referrer_kind, referring_domain,
    referrer_path_rule, search_term, landing_host
FROM v
GROUP BY GROUPING SETS (
    (utm_source, utm_medium, utm_campaign, utm_term, click_id, referrer_kind, referring_domain,
     referrer_path_rule, search_term),
    (landing_host)
)
