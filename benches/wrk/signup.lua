-- Unique signups: each request gets its own email so every one is a real 201, also across
-- repeated runs against one server (the run's start time is part of the address).
local started = os.time()
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
function request()
  n = n + 1
  local body = string.format(
    '{"email":"bench-%d-%d-%d-%d@example.com","company_name":"Bench Co","password":"BenchPass123!","plan":"starter"}',
    started, tid, n, math.random(1, 1000000000))
  return wrk.format("POST", "/signup", { ["Content-Type"] = "application/json" }, body)
end
