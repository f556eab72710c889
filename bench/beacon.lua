-- wrk script: one ahoy.js beacon per request (multipart/form-data with events_json, one event),
-- each with a unique event id so the collector's de-duplication keeps every one.
-- Prints one JSON line of results at the end (read by bench/collect.py).

local boundary = "----trailbenchboundary7d3a"
local ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local count = 0
local run = tostring(os.time())

local function field(name, value)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name .. "\"\r\n\r\n"
    .. value .. "\r\n"
end

function request()
  count = count + 1
  local id = string.format("bench-%s-%d-%d", run, tid or 0, count)
  local events = string.format(
    '[{"name":"$view","properties":{"url":"https://shop.test/p/%d","page":"/p","n":%d,"ok":true},'
    .. '"time":%d,"id":"%s","js":true}]', count % 50, count, os.time(), id)
  local visit = string.format("bench-visit-%d-%d", tid or 0, count % 200)
  local body = field("visit_token", visit) .. field("visitor_token", visit .. "-v")
    .. field("events_json", events) .. "--" .. boundary .. "--\r\n"
  return wrk.format("POST", nil, {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["User-Agent"] = ua,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '\nRESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,'
    .. '"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
