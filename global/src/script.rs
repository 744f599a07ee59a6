//! The commit script: one EVALSHA per commit, run by the master that owns
//! the namespace's slot, atomically (Redis runs a script to its end before
//! any other command).
//!
//! ```text
//!   KEYS[1]                  rime:{ns}:seq
//!   KEYS[2]                  rime:{ns}:done:<commit id>
//!   KEYS[3 ..= 2+r]          the r keys read, rime:{ns}:k:<key>
//!   KEYS[3+r ..= 2+r+w]      the w keys written
//!   ARGV[1]                  r, decimal
//!   ARGV[1+i]   (1 <= i <= r) the version read of KEYS[2+i], decimal
//!   ARGV[r+2j], ARGV[r+2j+1] (1 <= j <= w) op of KEYS[2+r+j]: "p" put
//!                            (then the value) or "d" delete (then "")
//!   reply                    {1, seq, r}: committed as seq (0: read-only);
//!                                      r: replicas to wait for (below)
//!                            {0, i}:   KEYS[2+i] changed, nothing written
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
///    hash is version 0). The first that does not ends the script with
///    `{0, i}`: nothing was written.
/// 3. A read-only commit ends there: `{1, 0}`.
/// 4. Take the namespace's next commit number (INCR of the counter) and
///    mark the commit id done with it.
/// 5. Apply the writes: a put sets `v` and `n` = the commit number; a
///    delete removes the hash.
/// 6. Count the replicas to wait for (module docs).
pub const COMMIT_LUA: &str = r#"
local done = redis.call('GET', KEYS[2])
if done then return {1, tonumber(done), 0} end
local r = tonumber(ARGV[1])
for i = 1, r do
  local n = redis.call('HGET', KEYS[2 + i], 'n') or '0'
  if n ~= ARGV[1 + i] then return {0, i} end
end
local w = #KEYS - 2 - r
if w == 0 then return {1, 0, 0} end
local seq = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], seq, 'EX', 600)
for j = 1, w do
  local key = KEYS[2 + r + j]
  if ARGV[r + 2 * j] == 'p' then
    redis.call('HSET', key, 'v', ARGV[r + 2 * j + 1], 'n', seq)
  else
    redis.call('DEL', key)
  end
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
