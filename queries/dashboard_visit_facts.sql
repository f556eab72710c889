-- dashboard_visit_facts: for each of the given visit tokens, whether the bound visits hold it,
-- its landing page, referrer and UTM tags (from its earliest row) and the ids of its $view
-- events in the bound events (the dashboard's source, device and pages-this-visit).
-- returns: visit_token, found, landing_page, referrer, utm_source, utm_medium, utm_campaign,
--   utm_term, device_type, browser, os, country, referring_domain, view_ids
-- params: $tokens
WITH wanted AS (
    SELECT DISTINCT unnest($tokens::VARCHAR[]) AS visit_token
),
visit AS (
    SELECT
        visit_token,
        arg_min(landing_page, started_at) AS landing_page,
        arg_min(referrer, started_at) AS referrer,
        arg_min(utm_source, started_at) AS utm_source,
        arg_min(utm_medium, started_at) AS utm_medium,
        arg_min(utm_campaign, started_at) AS utm_campaign,
        arg_min(utm_term, started_at) AS utm_term,
        arg_min(device_type, started_at) AS device_type,
        arg_min(browser, started_at) AS browser,
        arg_min(os, started_at) AS os,
        arg_min(country, started_at) AS country,
        arg_min(referring_domain, started_at) AS referring_domain
    FROM visits
    WHERE visit_token IN (SELECT visit_token FROM wanted)
    GROUP BY visit_token
),
views AS (
    SELECT visit_token, list(DISTINCT event_id) AS view_ids
    FROM events
    WHERE name = '$view' AND visit_token IN (SELECT visit_token FROM wanted)
    GROUP BY visit_token
)
SELECT
    w.visit_token,
    v.visit_token IS NOT NULL AS found,
    v.landing_page, v.referrer, v.utm_source, v.utm_medium, v.utm_campaign, v.utm_term,
    v.device_type, v.browser, v.os, v.country, v.referring_domain,
    coalesce(e.view_ids, []::VARCHAR[]) AS view_ids
FROM wanted AS w
LEFT JOIN visit AS v ON v.visit_token = w.visit_token
LEFT JOIN views AS e ON e.visit_token = w.visit_token
ORDER BY w.visit_token
