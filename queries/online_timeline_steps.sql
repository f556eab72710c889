-- online_timeline_steps: the number of persons online over [$from, $to) as a step function:
-- persons' sessions merged into stretches (gaps shorter than $grace_us closed: the rule of
-- trailcli/presence/rules.py merge_stretches, which tests/test_presence_rules.py checks this
-- statement against), +1/-1 per stretch
-- boundary summed per instant (a sweep line; ends and starts at one instant net out), and the
-- running total from each instant on; instants as microseconds since $from.
-- returns: since_from_us, online
-- params: $from, $to, $grace_us, $users_only
WITH spans AS (
    SELECT s.person, s.started AS s, coalesce(s.ended, d.end_at) AS e
    FROM timeline_sessions AS s LEFT JOIN settled AS d USING (node_id, client_id)
    WHERE s.person IS NOT NULL AND (s.is_user OR NOT $users_only)
),
ordered AS (
    SELECT person, s, e, max(e) OVER (
        PARTITION BY person ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    ) AS prev_end
    FROM spans
    WHERE e > s
),
islands AS (
    SELECT person, s, e, sum(CASE
        WHEN prev_end IS NULL OR (s > prev_end AND epoch_us(s) - epoch_us(prev_end) >= $grace_us)
            THEN 1 ELSE 0 END) OVER (PARTITION BY person ORDER BY s, e) AS island
    FROM ordered
),
stretches AS (
    SELECT greatest(min(s), $from) AS s, least(max(e), $to) AS e
    FROM islands
    GROUP BY person, island
    HAVING min(s) < $to AND max(e) > $from
)
SELECT
    epoch_us(instant) - epoch_us($from) AS since_from_us,
    (sum(sum(delta)) OVER (ORDER BY instant))::BIGINT AS online
FROM (
    SELECT s AS instant, 1 AS delta FROM stretches
    UNION ALL
    SELECT e AS instant, -1 AS delta FROM stretches WHERE e < $to
)
GROUP BY instant
ORDER BY instant
