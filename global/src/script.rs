//! The commit script: one EVALSHA per commit, run by the master that owns
//! the namespace's slot, atomically (Redis runs a script to its end before
//! any other command).
//!
//! ```text
//!   KEYS[1]                  rime:{ns}:seq
//!   KEYS[2 ..= 1+r]          the r keys read, rime:{ns}:k:<key>
//!   KEYS[2+r ..= 1+r+w]      the w keys written
//!   ARGV[1]                  r, decimal
//!   ARGV[1+i]   (1 <= i <= r) the version read of KEYS[1+i], decimal
//!   ARGV[r+2j], ARGV[r+2j+1] (1 <= j <= w) op of KEYS[1+r+j]: "p" put
//!                            (then the value) or "d" delete (then "")
//!   reply                    {1, seq}: committed as seq (0: read-only)
//!                            {0, i}:   KEYS[1+i] changed, nothing written
//! ```

/// Steps, in the script:
///
/// 1. Validate: every key read still has the version read (a missing
///    hash is version 0). The first that does not ends the script with
///    `{0, i}`: nothing was written.
/// 2. A read-only commit ends there: `{1, 0}`.
/// 3. Take the namespace's next commit number (INCR of the counter).
/// 4. Apply the writes: a put sets `v` and `n` = the commit number; a
///    delete removes the hash.
pub const COMMIT_LUA: &str = r#"
local r = tonumber(ARGV[1])
for i = 1, r do
  local n = redis.call('HGET', KEYS[1 + i], 'n') or '0'
  if n ~= ARGV[1 + i] then return {0, i} end
end
local w = #KEYS - 1 - r
if w == 0 then return {1, 0} end
local seq = redis.call('INCR', KEYS[1])
for j = 1, w do
  local key = KEYS[1 + r + j]
  if ARGV[r + 2 * j] == 'p' then
    redis.call('HSET', key, 'v', ARGV[r + 2 * j + 1], 'n', seq)
  else
    redis.call('DEL', key)
  end
end
return {1, seq}
"#;
