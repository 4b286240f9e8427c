-- wrk script for read scenarios: counts 2xx and other replies per thread and prints
-- one line "WRKJSON {...}" in done(), as ingest.lua does.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad = 0, 0
end

function response(status, headers, body)
  if status >= 200 and status <= 299 then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local okay, failed = 0, 0
  for _, thread in ipairs(threads) do
    okay = okay + thread:get("ok")
    failed = failed + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"ok":%d,"non_2xx":%d,"acked":0,'
    .. '"socket_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"bytes":%d}\n',
    summary.duration, summary.requests, okay, failed,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), summary.bytes))
end
