-- funnel_dropped: the units whose level is exactly $level (reached that step, not the next), not
-- excluded, with the visitor, visit and user of the event that reached the step, for trail replay.
-- returns: visitor_token, visit_token, user_id, reached_at
-- params: $level
SELECT e.visitor_token, e.visit_token, e.user_id, u.last_time AS reached_at
FROM _funnel_units AS u
JOIN _funnel_events AS e ON e.unit = u.unit AND e.event_id = u.last_id AND e.time = u.last_time
WHERE u.level = $level AND NOT u.excluded
ORDER BY u.last_time, e.visitor_token, e.visit_token
