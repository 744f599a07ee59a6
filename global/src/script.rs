//! The commit script: one EVALSHA per commit, run by the master that owns
//! the namespace's slot, atomically (Redis runs a script to its end before
//! any other command).
//!
//! ```text
//!   KEYS[1]                  rime:{ns}:seq
//!   KEYS[2]                  rime:{ns}:done:<commit id>
//!   KEYS[3]                  rime:{ns}:z, the index of the namespace's keys
//!   KEYS[4 ..= 3+r]          the r keys read, rime:{ns}:k:<key>
//!   KEYS[4+r ..= 3+r+w]      the w keys written
//!   ARGV[1], ARGV[2]         r and s (ranges scanned), decimal
//!   ARGV[3]                  p: bytes of `rime:{ns}:k:` (a written key's
//!                            index member is its name after them)
//!   ARGV[3+i]   (1 <= i <= r) the version read of KEYS[3+i], decimal
//!   then, per range scanned: min, max (ZRANGE BYLEX syntax), m, and the
//!                            m keys the index held in it, ascending
//!   then, per key written:   "p" put (then the value) or "d" delete
//!                            (then "")
//!   reply                    {1, seq, r}: committed as seq (0: read-only);
//!                                      r: replicas to wait for (below)
//!                            {0, i}:   read i changed (i <= r), or range
//!                                      i - r now holds other keys;
//!                                      nothing written
//! ```
//!
//! The commit id is unique per commit (`Cluster::commit`). Commits are sent
//! by a client that never resends (`retries(0)`); the `done` key (kept
//! `DONE_TTL_S`) guards anyway: a second run of one commit answers what
//! the first did instead of failing its validation against the first
//! run's own writes, which would re-run the invocation and apply it twice.
//! It is also the handle for resolving an unknown outcome.
//!
//! `r`, for a commit that wrote: the replicas the cluster knows for this
//! master and has not marked failed (`CLUSTER REPLICAS` of `CLUSTER
//! MYID`), whether or not their link is up now. The client then sends
//! `WAIT r` on the same connection before acknowledging
//! (`Cluster::commit`): any replica a failover may promote has the commit.

/// How long a commit's `done` key is kept: far beyond any retry.
pub const DONE_TTL_S: u32 = 600;

/// Steps, in the script:
///
/// 1. Already applied (this is a resend): answer `{1, seq}` as then.
/// 2. Validate: every key read still has the version read (a missing
///    hash is version 0), and every range scanned still holds exactly
///    the keys the scan saw (`scan.rs`: no phantom). The first that does
///    not ends the script with `{0, i}`: nothing was written.
/// 3. A read-only commit ends there: `{1, 0}`.
/// 4. Take the namespace's next commit number (INCR of the counter) and
///    mark the commit id done with it.
/// 5. Apply the writes: a put sets `v` and `n` = the commit number and
///    adds the key to the index; a delete removes the hash and the key
///    from the index.
/// 6. Count the replicas to wait for (module docs).
pub const COMMIT_LUA: &str = r#"
local done = redis.call('GET', KEYS[2])
if done then return {1, tonumber(done), 0} end
local r = tonumber(ARGV[1])
local s = tonumber(ARGV[2])
local p = tonumber(ARGV[3])
for i = 1, r do
  local n = redis.call('HGET', KEYS[3 + i], 'n') or '0'
  if n ~= ARGV[3 + i] then return {0, i} end
end
local a = 4 + r
for j = 1, s do
  local now = redis.call('ZRANGE', KEYS[3], ARGV[a], ARGV[a + 1], 'BYLEX')
  local m = tonumber(ARGV[a + 2])
  if #now ~= m then return {0, r + j} end
  for i = 1, m do
    if now[i] ~= ARGV[a + 2 + i] then return {0, r + j} end
  end
  a = a + 3 + m
end
local w = #KEYS - 3 - r
if w == 0 then return {1, 0, 0} end
local seq = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], seq, 'EX', 600)
for j = 1, w do
  local key = KEYS[3 + r + j]
  local member = string.sub(key, p + 1)
  if ARGV[a] == 'p' then
    redis.call('HSET', key, 'v', ARGV[a + 1], 'n', seq)
    redis.call('ZADD', KEYS[3], 0, member)
  else
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[3], member)
  end
  a = a + 2
end
local replicas = 0
local me = redis.pcall('CLUSTER', 'MYID')
if type(me) == 'string' then
  local lines = redis.pcall('CLUSTER', 'REPLICAS', me)
  if type(lines) == 'table' and not lines.err then
    for _, line in ipairs(lines) do
      local flags = string.match(line, '^%S+ %S+ (%S+)') or ''
      if not string.find(',' .. flags .. ',', ',fail,', 1, true) then
        replicas = replicas + 1
      end
    end
  end
end
return {1, seq, replicas}
"#;

const _: () = assert!(DONE_TTL_S == 600, "COMMIT_LUA's SET ... EX says 600");
