-- The peer's collector: what an operator would give prometheus-redis-exporter's --script to
-- export the harvest proposals without harvest-exporter. It runs inside Redis on every scrape
-- and returns alternating names and values, which the exporter publishes as
-- redis_script_values{key="<name>"}. It emits the seed's series: the kill score, its four
-- components, net R, the proposed stop loss, the last update epoch, and the one-hot action.
local prefix = 'quantum:harvest:proposal:'
local gauges = {
  {'kill_score', 'kill_score'},
  {'k_regime_flip', 'k_regime_flip'},
  {'k_sigma_spike', 'k_sigma_spike'},
  {'k_ts_drop', 'k_ts_drop'},
  {'k_age_penalty', 'k_age_penalty'},
  {'r_net', 'R_net'},
  {'new_sl', 'new_sl_proposed'},
  {'last_update_epoch', 'last_update_epoch'},
}
local actions = {'NONE', 'PARTIAL_25', 'PARTIAL_50', 'PARTIAL_75', 'FULL_CLOSE_PROPOSED'}
local wanted = {}
for i, gauge in ipairs(gauges) do wanted[i] = gauge[2] end
wanted[#wanted + 1] = 'r_net'
wanted[#wanted + 1] = 'harvest_action'

-- The exporter parses every value as a float and drops the whole script result on one failure,
-- so anything that is not a finite number (None, empty, nan, inf, garbage) becomes 0.
local function number(text)
  local value = tonumber(text)
  if value == nil or value ~= value or value == math.huge or value == -math.huge then
    return '0'
  end
  return text
end

local out = {}
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', prefix .. '*', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local symbol = string.sub(key, #prefix + 1)
    local values = redis.call('HMGET', key, unpack(wanted))
    for i, gauge in ipairs(gauges) do
      local raw = values[i]
      if gauge[1] == 'r_net' and not raw then raw = values[#gauges + 1] end
      out[#out + 1] = gauge[1] .. ':' .. symbol
      out[#out + 1] = number(raw)
    end
    local action = values[#gauges + 2]
    for _, known in ipairs(actions) do
      out[#out + 1] = 'action:' .. symbol .. ':' .. known
      out[#out + 1] = (action == known) and '1' or '0'
    end
  end
until cursor == '0'
return out
