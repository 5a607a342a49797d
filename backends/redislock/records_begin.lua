-- once.Store Begin: report a completion record, or raise the fence.
--
-- KEYS[1] record hash: field f = fence, field d = token of the completed run
-- ARGV[1] token (decimal uint64), ARGV[2] retention in ms ("0": forever)
--
-- Returns {1, by} when the key is complete, else {0, ""}. Tokens may exceed
-- 2^53, so they are compared as decimal strings, never as Lua numbers.
local function greater(a, b)
	if #a ~= #b then
		return #a > #b
	end
	for i = 1, #a do
		local x, y = string.byte(a, i), string.byte(b, i)
		if x ~= y then
			return x > y
		end
	end
	return false
end
local by = redis.call('hget', KEYS[1], 'd')
if by then
	return {1, by}
end
local fence = redis.call('hget', KEYS[1], 'f')
if not fence or greater(ARGV[1], fence) then
	redis.call('hset', KEYS[1], 'f', ARGV[1])
end
if ARGV[2] == '0' then
	redis.call('persist', KEYS[1])
else
	redis.call('pexpire', KEYS[1], ARGV[2])
end
return {0, ''}
