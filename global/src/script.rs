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
//!   reply                    {1, seq}: committed as seq (0: read-only)
//!                            {0, i}:   KEYS[2+i] changed, nothing written
//! ```
//!
//! The commit id is unique per commit (`Cluster::commit`): the client
//! library sends a command again after a connection reset, so the script
//! may run twice for one commit. The `done` key (kept `DONE_TTL_S`) makes
//! the second run answer what the first did instead of failing its
//! validation against the first run's own writes, which would re-run the
//! invocation and apply it twice.

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
pub const COMMIT_LUA: &str = r#"
local done = redis.call('GET', KEYS[2])
if done then return {1, tonumber(done)} end
local r = tonumber(ARGV[1])
for i = 1, r do
  local n = redis.call('HGET', KEYS[2 + i], 'n') or '0'
  if n ~= ARGV[1 + i] then return {0, i} end
end
local w = #KEYS - 2 - r
if w == 0 then return {1, 0} end
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
return {1, seq}
"#;

const _: () = assert!(DONE_TTL_S == 600, "COMMIT_LUA's SET ... EX says 600");
