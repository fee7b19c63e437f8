-- A year of rollups for bench/analytics.sh, generated straight into the tables the usage writer keeps, consistent with
-- one another: 500 devices (400 people signed in, 100 devices enrolled by name), 20 groups, four models, the hourly and
-- daily device rollups, the daily user and group rollups, the hourly model rollups with their error statuses, the daily
-- time-to-first-token histograms, hourly refusals, and Claude Code sessions with subagents on working days.
-- psql variables: days (default 365), devices (default 500), end_day (the day after the last generated day, UTC).
\set ON_ERROR_STOP on
SELECT setseed(0.42);

CREATE TEMP TABLE models (model text, m int, p_in numeric, p_out numeric, weight int);
INSERT INTO models VALUES
  ('claude-sonnet-4-5-20250929', 0, 3, 15, 50), ('claude-opus-4-5-20251101', 1, 5, 25, 15),
  ('claude-haiku-4-5-20251001', 2, 1, 5, 30), ('claude-opus-4-1-20250805', 3, 15, 75, 5);

-- Devices: 1..400 are people's sign-in devices (@usr_...), the rest enrolled by name, owned by one of the people.
CREATE TEMP TABLE dev AS
SELECT d, CASE WHEN d <= 400 THEN '@usr_' || lpad(d::text, 16, '0') ELSE 'bench-device-' || d END AS device_id,
       'usr_' || lpad(CASE WHEN d <= 400 THEN d ELSE 1 + (d * 7) % 400 END::text, 16, '0') AS user_id,
       1 + (d % 20) AS g1, 1 + ((d * 3) % 20) AS g2, 0.3 + random() * 1.4 AS intensity
FROM generate_series(1, :devices) AS d;

INSERT INTO users (user_id, issuer, subject, email, name, groups, status, first_seen, last_seen)
SELECT 'usr_' || lpad(u::text, 16, '0'), 'https://idp.example.com', 'sub-' || u, 'person' || u || '@example.com', 'Person ' || u, '{}', 'active', now(), now()
FROM generate_series(1, 400) AS u;

INSERT INTO devices (device_id, user_id, org_id, status, models, rate_limit, policy_version, first_seen, last_seen, owner_user_id)
SELECT device_id, user_id, 'default', 'active', '{claude-*}', 100, 1, now(), now(), CASE WHEN d > 400 THEN user_id END FROM dev;

INSERT INTO groups (group_id, name, source, policy_version, created_at, updated_at)
SELECT 'grp_' || lpad(g::text, 16, '0'), 'team-' || g, 'idp', 1, now(), now() FROM generate_series(1, 20) AS g;

-- One row per device, active day and model used that day; about four in five days active, weekends quieter.
CREATE TEMP TABLE daily AS
SELECT day, dev.device_id, dev.user_id, dev.g1, dev.g2, models.model, models.m,
       r.requests, r.requests * 40 AS input, r.requests * 600 AS output, r.requests * 900 AS w5, r.requests * 120 AS w1, r.requests * 18000 AS rd,
       round((r.requests * (40 * models.p_in + 600 * models.p_out + 900 * models.p_in * 1.25 + 120 * models.p_in * 2 + 18000 * models.p_in * 0.1)) / 1000000, 10) AS cost
FROM generate_series(:'end_day'::timestamptz - make_interval(days => :days), :'end_day'::timestamptz - interval '1 day', interval '1 day') AS day
CROSS JOIN dev CROSS JOIN models
CROSS JOIN LATERAL (SELECT (1 + random() * 60 * dev.intensity * models.weight / 50)::bigint AS requests) AS r
WHERE random() < CASE WHEN extract(isodow FROM day) >= 6 THEN 0.15 ELSE 0.8 END * CASE models.m WHEN 3 THEN 0.3 ELSE 1 END;

-- Each active day's usage spread over four working hours, so that the hours sum to the day.
CREATE TEMP TABLE hourly AS
SELECT day + make_interval(hours => 8 + h * 2 + (hashtext(device_id) & 1)) AS hour, device_id, model, m,
       requests / 4 + CASE WHEN h < requests % 4 THEN 1 ELSE 0 END AS requests, input / 4 AS input, output / 4 AS output, w5 / 4 AS w5, w1 / 4 AS w1, rd / 4 AS rd,
       cost / 4 AS cost
FROM daily CROSS JOIN generate_series(0, 3) AS h;

-- Interleaved by day, as the writer leaves them.
INSERT INTO usage_rollups (granularity, bucket_start, device_id, model, requests, errors, input_tokens, output_tokens, cache_write_5m_tokens,
  cache_write_1h_tokens, cache_read_tokens, cost_usd, unpriced_requests)
SELECT * FROM (
  SELECT 'h', hour, device_id, model, requests, requests / 50, input, output, w5, w1, rd, cost, 0 FROM hourly
  UNION ALL SELECT 'd', day, device_id, model, requests, requests / 50, input, output, w5, w1, rd, cost, 0 FROM daily) AS x
ORDER BY 2, 3, 1;

INSERT INTO user_rollups (bucket_start, user_id, model, requests, errors, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
  cache_read_tokens, cost_usd)
SELECT day, user_id, model, sum(requests), sum(requests / 50), sum(input), sum(output), sum(w5), sum(w1), sum(rd), sum(cost)
FROM daily GROUP BY day, user_id, model ORDER BY 1, 2, 3;

INSERT INTO group_rollups (bucket_start, group_id, model, requests, errors, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
  cache_read_tokens, cost_usd)
SELECT day, 'grp_' || lpad(g::text, 16, '0'), model, sum(requests), sum(requests / 50), sum(input), sum(output), sum(w5), sum(w1), sum(rd), sum(cost)
FROM daily CROSS JOIN LATERAL (SELECT DISTINCT unnest(ARRAY[g1, g2]) AS g) AS gs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- Per hour and model: 2 % answered 429, 0.5 % 529, 0.3 % 500, a few streams ending in an error; the rest 200.
CREATE TEMP TABLE per_model AS
SELECT hour, model, sum(requests) AS requests, sum(input) AS input, sum(output) AS output, sum(w5) AS w5, sum(w1) AS w1, sum(rd) AS rd, sum(cost) AS cost
FROM hourly GROUP BY hour, model;
INSERT INTO model_rollups (bucket_start, model, status, stream_error, requests, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
  cache_read_tokens, cost_usd)
SELECT hour, model, s.status, s.stream_error, greatest(1, (requests * s.share)::bigint), (input * s.share)::bigint, (output * s.share)::bigint,
       (w5 * s.share)::bigint, (w1 * s.share)::bigint, (rd * s.share)::bigint, round(cost * s.share, 10)
FROM per_model CROSS JOIN (VALUES (200, false, 0.968), (200, true, 0.004), (429, false, 0.02), (529, false, 0.005), (500, false, 0.003)) AS s(status, stream_error, share)
WHERE s.status = 200 AND NOT s.stream_error OR random() < 0.5
ORDER BY 1, 2, 3, 4;

-- Time to first token: roughly log-normal around 2^(74/8) ms (600 ms), slower for Opus.
INSERT INTO ttft_rollups (bucket_start, model, bucket, requests)
SELECT d.day, d.model, b, greatest(1, (d.requests * exp(-power((b - 74 - d.m * 3) / 6.0, 2)) / 10.6)::bigint)
FROM (SELECT day, model, m, sum(requests) AS requests FROM daily GROUP BY day, model, m) AS d CROSS JOIN generate_series(50, 100) AS b
ORDER BY 1, 2, 3;

INSERT INTO refusal_rollups (bucket_start, reason, requests)
SELECT hour, reason, 1 + (random() * n)::bigint
FROM (SELECT DISTINCT date_trunc('hour', hour) AS hour FROM hourly) AS h
CROSS JOIN (VALUES ('rate_limit', 40), ('token_budget', 10), ('spend_cap', 5), ('model', 3), ('authentication', 8), ('invalid_request', 4), ('circuit_open', 1)) AS r(reason, n)
WHERE random() < 0.6
ORDER BY 1, 2;

-- Sessions: on each active working day, one to four per device; each has its main conversation and up to four subagents
-- (some started by another subagent), on one or two models.
CREATE TEMP TABLE sess AS
SELECT md5(device_id || day || s) AS session_id, device_id, 'person' || substr(user_id, 5)::bigint || '@example.com' AS email, day + make_interval(hours => 8 + s * 2) AS start,
       (random() * 4)::int AS subagents
FROM (SELECT DISTINCT day, device_id, user_id FROM daily WHERE extract(isodow FROM day) < 6) AS d
CROSS JOIN LATERAL generate_series(1, 1 + (random() * 3)::int) AS s;

INSERT INTO session_rollups (session_id, agent_id, model, device_id, user_email, parent_agent_id, first_seen, last_seen, requests, errors, input_tokens,
  output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd)
SELECT session_id, agent_id, model, device_id, email, parent, start + make_interval(mins => a * 3), start + make_interval(mins => a * 3 + 5 + (random() * 60)::int),
       r, 0, r * 40, r * 600, r * 900, r * 120, r * 18000, round(r * (40 * p_in + 600 * p_out + 900 * p_in * 1.25 + 120 * p_in * 2 + 18000 * p_in * 0.1) / 1000000, 10)
FROM (
  SELECT sess.*, a, CASE WHEN a = 0 THEN '' ELSE 'agent-' || a END AS agent_id,
         CASE WHEN a >= 3 THEN 'agent-' || (a - 2) END AS parent,
         CASE WHEN a = 0 THEN 'claude-sonnet-4-5-20250929' ELSE 'claude-haiku-4-5-20251001' END AS model, (5 + random() * 40)::bigint AS r
  FROM sess CROSS JOIN LATERAL generate_series(0, sess.subagents) AS a
) AS x JOIN models USING (model);

-- A year-old table has been vacuumed many times over: its visibility map lets index-only scans skip the heap.
VACUUM ANALYZE;
SELECT 'usage_rollups' AS "table", count(*) AS rows FROM usage_rollups
UNION ALL SELECT 'user_rollups', count(*) FROM user_rollups
UNION ALL SELECT 'group_rollups', count(*) FROM group_rollups
UNION ALL SELECT 'model_rollups', count(*) FROM model_rollups
UNION ALL SELECT 'session_rollups', count(*) FROM session_rollups
UNION ALL SELECT 'sessions', count(DISTINCT session_id) FROM session_rollups
UNION ALL SELECT 'ttft_rollups', count(*) FROM ttft_rollups
UNION ALL SELECT 'refusal_rollups', count(*) FROM refusal_rollups;
