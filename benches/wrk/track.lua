-- POST /activation/track for several tenants, each with its own API key. BENCH_TRACK holds
-- "tenant_id key" pairs separated by commas. Every request carries a fresh event_id.
local pairs_ = {}
for pair in string.gmatch(os.getenv("BENCH_TRACK"), "[^,]+") do
  local tenant, key = string.match(pair, "(%S+) (%S+)")
  table.insert(pairs_, { tenant = tenant, key = key })
end
local types = { "wizard_step_viewed", "wizard_step_completed", "first_document_upload", "first_query_executed" }
local n = 0
local seed = 0
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  seed = math.random(1, 2000000000)
end
function request()
  n = n + 1
  local who = pairs_[(n % #pairs_) + 1]
  local body = string.format(
    '{"tenant_id":"%s","event_type":"%s","metadata":{"step":%d,"source":"bench"},"event_id":"b%d-%d"}',
    who.tenant, types[(n % #types) + 1], n % 4 + 1, seed, n)
  return wrk.format("POST", "/activation/track",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. who.key }, body)
end
