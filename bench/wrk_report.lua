-- wrk script for bench/loadgen.py: prints one line "BENCHJSON {...}" with the totals and
-- 200 latency quantiles (0.25 % .. 99.75 %). It defines no response() function on purpose:
-- with one, wrk copies every body into Lua, which costs more CPU for big pages than for
-- small ones on the machine being measured. wrk counts answers with status >= 400 itself;
-- loadgen.py checks the bytes per answer against the page's size to catch the rest.
function done(summary, latency, requests)
  local quantiles = {}
  if summary.requests > 0 then
    for i = 0, 199 do
      quantiles[#quantiles + 1] = string.format("%d", latency:percentile(0.25 + i * 0.5))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"quantiles_us":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout, table.concat(quantiles, ",")))
end
