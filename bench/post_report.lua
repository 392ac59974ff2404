-- wrk script: POST /api/v1/incidents, each request a valid report at its own random point.
-- Points are uniform over Vietnam's bounding box (as bench/payload.py), so duplicate detection
-- (150 m, same category group) runs for every report but merges almost nothing.
-- The token comes from IOC_BENCH_TOKEN; done() prints one machine-readable line.

local token = os.getenv("IOC_BENCH_TOKEN") or ""
local seed = tonumber(os.getenv("IOC_BENCH_SEED") or "") or os.time()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local body = '{"category":"moi_truong.rac_thai","title":"Rác thải đổ trộm",'
  .. '"description":"Rác thải đổ trộm đầu hẻm 12 (benchmark)","channel":"web",'
  .. '"location":{"lat":%.6f,"lon":%.6f,"address":"Hẻm 12, Đồng Xoài","area_code":"25210"},'
  .. '"reporter":{"name":"Nguyễn Văn An","phone":"0912345678","email":"an@example.vn",'
  .. '"channel_user_id":"zalo-123"}}'

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

function init(args)
  math.randomseed(seed + 7919 * (thread_id or 0))
end

function request()
  local lat = 8.5 + math.random() * 14.5
  local lon = 102.5 + math.random() * 6.5
  return wrk.format(nil, nil, nil, string.format(body, lat, lon))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
