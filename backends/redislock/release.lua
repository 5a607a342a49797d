-- release: delete the lock if owner holds it (compare-and-delete). The fence
-- key stays: it carries the last token to the next holder.
--
-- KEYS[1] lock key
-- ARGV[1] owner
--
-- Returns 1 when the lock was deleted, 0 when owner did not hold it.
if redis.call('get', KEYS[1]) ~= ARGV[1] then
	return 0
end
return redis.call('del', KEYS[1])
