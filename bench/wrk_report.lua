-- wrk script for bench/loadgen.py: counts answers whose status is not 200 and prints one
-- line "BENCHJSON {...}" with the totals and 200 latency quantiles (0.25 % .. 99.75 %).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
  end
  local quantiles = {}
  if summary.requests > 0 then
    for i = 0, 199 do
      quantiles[#quantiles + 1] = string.format("%d", latency:percentile(0.25 + i * 0.5))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"non200":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"quantiles_us":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, bad,
    e.connect, e.read, e.write, e.timeout, table.concat(quantiles, ",")))
end
