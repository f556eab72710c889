-- referrers_landing_hosts: the distinct hosts of the visits' landing pages (the `site` rows of
-- _ref_groups), the site's own hosts when --site-host is not given.
-- returns: landing_host
-- params: none
SELECT landing_host FROM _ref_groups WHERE kind = 'site'
