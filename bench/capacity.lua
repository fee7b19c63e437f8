-- wrk, for bench/capacity.sh: POST a message (the body from BENCH_BODY, the token from BENCH_TOKEN), count the answers
-- by status, and check that every 429 is in Anthropic's error shape with the type rate_limit_error. The request itself
-- is bench/post.lua's.
dofile("bench/post.lua")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, limited, shaped, other = 0, 0, 0, 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 429 then
    limited = limited + 1
    if body:find('^{"type":"error","error":{"type":"rate_limit_error","message":"') then
      shaped = shaped + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, l, s, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); l = l + t:get("limited"); s = s + t:get("shaped"); x = x + t:get("other")
  end
  io.write(string.format("CAPACITY ok=%d limited=%d shaped=%d other=%d rps=%.1f\n", o, l, s, x,
    summary.requests / (summary.duration / 1e6)))
end
