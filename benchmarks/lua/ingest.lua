-- wrk script: every request carries rows no earlier request carried.
--
-- Arguments after "--" (key=value): kind=json|csv|readings|signed|airrohr|influx|ttn,
-- rows=<rows, observations or lines per request>, per=<readings per observation>, base=<first UNIX second of this run>, threads=<wrk -t>,
-- lua_dir=<this directory>, sensors=<file of "SUID SECRET" lines> (signed),
-- suids=<rogue SUIDs per thread> (readings), nonce=<8 hex digits> (readings),
-- once=1: each thread stops once every one of its sensors has been answered once
-- (the warm-up: the measured runs then post for sensors that exist, as in steady use).
-- Timestamps are base + (thread, request, row) so no two rows of a run are equal.
-- Each thread counts 2xx replies, other replies and acknowledged rows; done()
-- prints their sums as one line "WRKJSON {...}" that loadgen.py reads.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function options(args)
  local opts = {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then opts[key] = value end
  end
  return opts
end

local function read_sensors(path, nthreads)
  local mine = {}
  local index = 0
  for line in io.lines(path) do
    local suid, secret = line:match("^(%S+)%s+(%S+)$")
    if suid then
      if index % nthreads == tid then table.insert(mine, {suid, secret}) end
      index = index + 1
    end
  end
  return mine
end

-- The same sensors in every run of a server (their timestamps differ per run), so
-- the runs after the warm-up measure sensors that exist, as in steady use.
local function rogue_sensors(count)
  local mine = {}
  for k = 1, count do
    table.insert(mine, {string.format("00000000-%04x-4000-8000-%012x", tid, k), ""})
  end
  return mine
end

function init(args)
  local opts = options(args)
  kind = opts.kind
  rows = tonumber(opts.rows or "1")
  per = tonumber(opts.per or "3")
  base = tonumber(opts.base)
  nthreads = tonumber(opts.threads or "1")
  sent, ok, bad, acked = 0, 0, 0, 0
  if kind == "signed" then
    dofile(opts.lua_dir .. "/sha256.lua")
    sensors = read_sensors(opts.sensors, nthreads)
  else
    sensors = rogue_sensors(tonumber(opts.suids or "50"))
  end
  nonce = tonumber(opts.nonce or "0", 16) or 0
  once, finished = opts.once == "1", false
end

-- Legacy rows: the n-th row of this thread in this run.
local function legacy_values(n)
  local t = base + tid * 10000000 + n
  return t, 400 + t % 600, (t % 300) / 10, 30 + t % 60 + 0.5
end

local function json_body(first)
  local times, co2, temp, hum = {}, {}, {}, {}
  for j = 1, rows do
    local t, c, te, h = legacy_values(first + j)
    times[j], co2[j], temp[j], hum[j] = t, c, string.format("%.1f", te), h
  end
  return '{"time":[' .. table.concat(times, ",") .. '],"co2":[' .. table.concat(co2, ",")
    .. '],"temperature":[' .. table.concat(temp, ",") .. '],"humidity":['
    .. table.concat(hum, ",") .. "]}"
end

local function csv_body(first)
  local lines = {"time,co2,temperature,humidity"}
  for j = 1, rows do
    local t, c, te, h = legacy_values(first + j)
    lines[j + 1] = string.format("%d,%d,%.1f,%.1f", t, c, te, h)
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Reading types of the OpenSmog registry, the first `per` go into an observation.
local TYPES = {"PM10", "PM2_5", "TEMP", "HUM", "PRES", "CO2", "PM1", "PM4", "NO2", "O3"}

-- One sensor's observations: its k-th request starts at second base + k * rows.
local function readings_body(k)
  local items = {}
  for j = 1, rows do
    local ts = base + k * rows + j
    local values = {}
    for r = 1, per do
      values[r] = string.format('"%s":%.1f', TYPES[r], r * 3 + ts % 40)
    end
    items[j] = string.format('{"timestamp":%d,"readings":{%s}}', ts,
      table.concat(values, ","))
  end
  return "[" .. table.concat(items, ",") .. "]"
end

-- airrohr: the firmware's 10 values of an SDS011 + BME280 + DHT22 node (strings).
local AIRROHR = {"SDS_P1", "SDS_P2", "BME280_temperature", "BME280_humidity",
  "BME280_pressure", "temperature", "humidity", "signal", "samples", "min_micro"}

local function airrohr_body(k)
  local values = {}
  for r = 1, #AIRROHR do
    values[r] = string.format('{"value_type":"%s","value":"%.2f"}', AIRROHR[r],
      r * 7 + (k % 50) / 10)
  end
  return '{"esp8266id": "' .. k .. '", "software_version": "NRZ-2024-135", '
    .. '"sensordatavalues":[' .. table.concat(values, ",") .. ']}'
end

-- Telegraf: `rows` lines of one series, 3 fields each, precision s.
local function influx_body(sensor, k)
  local lines = {}
  for j = 1, rows do
    local ts = base + k * rows + j
    lines[j] = string.format("env,host=%s temperature=%.1f,humidity=%di,co2=%d %d",
      sensor, (ts % 300) / 10, ts % 100, 400 + ts % 600, ts)
  end
  return table.concat(lines, "\n") .. "\n"
end

-- The Things Stack v3 uplink webhook: 3 decoded values, the gateway's time.
local function ttn_body(sensor, k)
  local ts = base + k
  return string.format('{"end_device_ids":{"device_id":"bench","application_ids":'
    .. '{"application_id":"bench"},"dev_eui":"%016X"},"received_at":"%s",'
    .. '"uplink_message":{"f_port":1,"f_cnt":%d,"frm_payload":"AQI=",'
    .. '"decoded_payload":{"temperature":%.1f,"humidity":%d,"co2":%d},'
    .. '"rx_metadata":[{"gateway_ids":{"gateway_id":"gw"},"time":"%s","rssi":-80}]}}',
    sensor, os.date("!%Y-%m-%dT%H:%M:%SZ", ts), k, (ts % 300) / 10, ts % 100,
    400 + ts % 600, os.date("!%Y-%m-%dT%H:%M:%SZ", ts))
end

local json_headers = {["Content-Type"] = "application/json"}
local csv_headers = {["Content-Type"] = "text/csv"}

function request()
  local n = sent
  sent = sent + 1
  if kind == "json" then
    return wrk.format("POST", "/upload", json_headers, json_body(n * rows))
  elseif kind == "csv" then
    return wrk.format("POST", "/upload", csv_headers, csv_body(n * rows))
  end
  local count = #sensors
  local index = n % count
  local sensor = sensors[index + 1]
  local k = math.floor(n / count)
  if kind == "airrohr" then
    local node = 1000000 + tid * 10000 + index  -- the same nodes in every run
    local headers = {["Content-Type"] = "application/json",
      ["X-Sensor"] = "esp8266-" .. node, ["X-MAC-ID"] = "esp8266-aabbccddeeff"}
    return wrk.format("POST", "/airrohr/v1/push", headers, airrohr_body(node))
  elseif kind == "influx" then
    local host = string.format("b%d-%d", tid, index)
    return wrk.format("POST", "/write?db=bench&precision=s",
      {["Content-Type"] = "text/plain; charset=utf-8"}, influx_body(host, k))
  elseif kind == "ttn" then
    local eui = 1000000 + tid * 100000 + index
    return wrk.format("POST", "/lorawan/v1/ttn",
      {["Content-Type"] = "application/json", ["X-Webhook-Secret"] = "bench"},
      ttn_body(eui, k))
  end
  local body = readings_body(k)
  if kind == "signed" then
    local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "OpenSmogHash " .. sha256_hex(body .. sensor[2]),
    }
    return wrk.format("POST", "/v1/sensors/" .. sensor[1] .. "/readings", headers, body)
  end
  return wrk.format("POST", "/rogue/v1/sensors/" .. sensor[1] .. "/readings",
    json_headers, body)
end

function response(status, headers, body)
  if once and not finished and ok + bad + 1 >= #sensors then
    finished = true  -- wrk's main thread sleeps for -d: loadgen ends it on this line
    io.stderr:write("WRKDONE\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
  if status < 200 or status > 299 then
    bad = bad + 1
    return
  end
  ok = ok + 1
  if kind == "json" or kind == "csv" then
    acked = acked + (tonumber(body:match('"saved%-in%-db"%s*:%s*(%d+)')) or 0)
  elseif kind == "airrohr" then
    acked = acked + 10
  else
    acked = acked + rows * per
  end
end

function done(summary, latency, requests)
  local total = {ok = 0, bad = 0, acked = 0}
  for _, thread in ipairs(threads) do
    total.ok = total.ok + thread:get("ok")
    total.bad = total.bad + thread:get("bad")
    total.acked = total.acked + thread:get("acked")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"ok":%d,"non_2xx":%d,"acked":%d,'
    .. '"socket_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"bytes":%d}\n',
    summary.duration, summary.requests, total.ok, total.bad, total.acked,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), summary.bytes))
end
