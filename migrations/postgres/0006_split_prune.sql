-- The housekeeping job 'prune' became 'prune_sessions' and 'prune_rate_limits' (the engine now
-- prunes its own finished jobs); a queued 'prune' job has no handler any more.
DELETE FROM jobs WHERE kind = 'prune' AND status IN ('queued', 'running');
