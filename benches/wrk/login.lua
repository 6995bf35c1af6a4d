-- Sign-ins with unknown emails, each from its own client address (X-Forwarded-For, trusted
-- from 127.0.0.1 by the benchmark's server), so no per-address limit cuts the flood short:
-- every request costs a full argon2 check, as a distributed password-spraying attack would.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
function request()
  n = n + 1
  local body = string.format('{"email":"nobody-%d-%d@example.com","password":"WrongPass123!"}', tid, n)
  local ip = string.format("10.%d.%d.%d", tid, math.floor(n / 250) % 250, n % 250 + 1)
  return wrk.format("POST", "/login", {
    ["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = ip,
  }, body)
end
