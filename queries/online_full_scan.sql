-- online_full_scan: how many client sessions are open at an instant, by the latest transition of
-- each client at or before it over the whole bound presence view: the plain scan that snapshots
-- avoid (bench/online.py runs it beside `trail online --at`).
-- returns: open_sessions
-- params: $at
SELECT count(*) AS open_sessions
FROM (
    SELECT arg_max(transition, (time, seq)) AS last_transition
    FROM presence
    WHERE time <= $at AND transition <> 'heartbeat' AND coalesce(client_id, '') <> ''
    GROUP BY node_id, client_id
)
WHERE last_transition <> 'offline'
