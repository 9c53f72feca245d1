-- wrk script for bench/e2e.sh. Each request takes the next path from the
-- file named by the environment variable E2E_PATHS, one path a line. Each
-- of the E2E_THREADS threads keeps every E2E_THREADS-th line, so no two
-- threads send the same path. A thread that reaches the end of its lines
-- starts over and counts a wrap: with a list of fresh tokens, a wrap
-- means that some tokens were sent twice.
--
-- done() prints one line of name=value fields for e2e report.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local count = tonumber(os.getenv("E2E_THREADS"))
  paths = {}
  local line_number = 0
  for line in io.lines(os.getenv("E2E_PATHS")) do
    if line_number % count == id then
      paths[#paths + 1] = line
    end
    line_number = line_number + 1
  end
  if #paths == 0 then
    error("no paths for thread " .. id .. " in " .. os.getenv("E2E_PATHS"))
  end
  next_path = 0
  wraps = 0
end

function request()
  next_path = next_path + 1
  if next_path > #paths then
    next_path = 1
    wraps = wraps + 1
  end
  return wrk.format("GET", paths[next_path])
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + thread:get("wraps")
  end
  local errors = summary.errors
  io.write(string.format(
    "requests=%d duration_us=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d wraps=%d\n",
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), wrapped))
end
