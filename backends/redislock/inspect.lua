-- inspect: who holds the lock, with which token, for how long.
--
-- KEYS[1] lock key, KEYS[2] fence key
--
-- Returns false when the lock is free, else {owner, token, pttl}. While a
-- lock is held its token is the fence key's value: only a successful
-- acquire writes the fence key.
local owner = redis.call('get', KEYS[1])
if not owner then
	return false
end
return {owner, redis.call('get', KEYS[2]) or '0', redis.call('pttl', KEYS[1])}
