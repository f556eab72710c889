-- online_visit_fields: the columns `trail online` shows for each of the given visits.
-- returns: visit_token, browser, os, device_type, country, referring_domain
-- params: $tokens
SELECT
    visit_token,
    arg_min(browser, started_at) AS browser,
    arg_min(os, started_at) AS os,
    arg_min(device_type, started_at) AS device_type,
    arg_min(country, started_at) AS country,
    arg_min(referring_domain, started_at) AS referring_domain
FROM visits
WHERE visit_token IN (SELECT unnest($tokens))
GROUP BY visit_token
