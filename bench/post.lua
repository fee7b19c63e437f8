-- wrk: POST a message; the body comes from BENCH_BODY (a file), the token from BENCH_TOKEN.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["authorization"] = "Bearer " .. token
end
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["x-api-key"] = key
end
local extra = os.getenv("BENCH_HEADER")
if extra ~= nil and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), summary.errors.status))
end
