-- online_last_pages: each given visit's latest `$view` page at or before an instant.
-- returns: visit_token, last_page, last_page_at
-- params: $tokens, $upto
SELECT visit_token, arg_max(page, time) AS last_page, max(time) AS last_page_at
FROM events
WHERE page IS NOT NULL AND time <= $upto AND visit_token IN (SELECT unnest($tokens))
GROUP BY visit_token
