-- wrk script: POST pre-built JSON bodies in turn (one per line of the file named after `--`),
-- and print the summary as one `WRK_JSON {...}` line for benchmarks/wrk.py to read.
local requests = {}
local next_index = 1

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      requests[#requests + 1] =
        wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, line)
    end
  end
end

-- Returning a string built in init() keeps the per-request cost to a table lookup.
function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50_us": %.1f, "p99_us": %.1f, "max_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
