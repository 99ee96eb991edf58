-- wrk script for `make bench` (bench/run.py). One script for every scenario, set by environment:
--   BENCH_MODE   get (fixed path, the default) | item (GET /api/v1/items/<random id>)
--                | list (GET /api/v1/items?offset=<random>&limit=20) | post (POST /api/v1/items)
--   BENCH_IDS    ids/offsets are drawn from 1..BENCH_IDS (item, list)
--   BENCH_DELAY_MS  pause per connection between requests (a probe's low, steady rate)
--   BENCH_STATUS set: count responses by status code (costs a little throughput)
--   BENCH_API_KEY   sent as X-API-Key on every request (the /api/v1 routes need one)
-- done() prints one JSON line prefixed "BENCH_JSON " with requests/s, latency percentiles (ms),
-- wrk's error counters and, with BENCH_STATUS, the status counts.

local mode = os.getenv("BENCH_MODE") or "get"
local ids = tonumber(os.getenv("BENCH_IDS") or "1000")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local count_status = os.getenv("BENCH_STATUS") ~= nil
local api_key = os.getenv("BENCH_API_KEY")
if api_key and api_key ~= "" then
  wrk.headers["X-API-Key"] = api_key
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
  statuses = {}
  seq = 0
end

if mode == "item" then
  request = function()
    return wrk.format("GET", "/api/v1/items/" .. math.random(1, ids))
  end
elseif mode == "list" then
  request = function()
    return wrk.format("GET", "/api/v1/items?offset=" .. math.random(0, ids - 20) .. "&limit=20")
  end
elseif mode == "post" then
  request = function()
    seq = seq + 1
    local body = '{"name":"bench ' .. (id or 0) .. "-" .. seq
      .. '","description":"written by make bench"}'
    -- A headers table given to wrk.format replaces wrk.headers: the key (if any) goes in again.
    local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = wrk.headers["X-API-Key"]}
    return wrk.format("POST", "/api/v1/items", headers, body)
  end
end

if delay_ms > 0 then
  delay = function()
    return delay_ms
  end
end

if count_status then
  response = function(status, headers, body)
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local counts = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    if s then
      for code, n in pairs(s) do
        counts[code] = (counts[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%s":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,'
      .. '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"statuses":{%s}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
