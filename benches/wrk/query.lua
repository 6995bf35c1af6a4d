-- POST /v1/query with a rotating set of questions; the key comes from BENCH_API_KEY.
local key = os.getenv("BENCH_API_KEY")
local questions = {
  "how do I rotate an api key",
  "refund policy for annual plans",
  "vector search latency in production",
  "onboarding checklist for new customers",
  "what happens when a payment fails",
}
local n = 0
function request()
  n = n + 1
  local body = string.format('{"query":"%s","top_k":5}', questions[(n % #questions) + 1])
  return wrk.format("POST", "/v1/query",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
