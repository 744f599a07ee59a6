//! Scripts of raw host calls, and the transcripts of what they returned.
//!
//! A script is a sequence of [`Op`]s encoded as bytes ([`encode`]): the
//! faaslet's input. [`run`] makes each call through [`rime_sdk::raw`] with
//! exactly the arguments given, nothing checked or retried, and writes one
//! transcript line per call: the result code, and for the calls that write
//! guest memory (`input`, `get`, `add`, `scan`) the whole buffer afterwards,
//! in hex. Buffers start filled with [`SENTINEL`], so "nothing was copied"
//! shows.
//!
//! ```text
//! script:  op*          op: tag u8, then its fields (integers little-endian)
//! bytes:   0 len:u32 b* (literal) | 1 len:u32 b:u8 (len copies of b) | 2 (absent, NONE)
//! ```

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use rime_sdk::abi::{RESULT_ERROR, RESULT_OK};
use rime_sdk::raw;

/// What every buffer holds before a call.
pub const SENTINEL: u8 = 0xA5;

/// The bytes of an argument: literal, or `len` copies of one byte (so a
/// 16 MiB value needs no 16 MiB of input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// These bytes.
    Lit(Vec<u8>),
    /// `.0` copies of `.1`.
    Fill(u32, u8),
}

impl Bytes {
    /// Literal bytes.
    pub fn lit(b: impl AsRef<[u8]>) -> Bytes {
        Bytes::Lit(b.as_ref().to_vec())
    }

    fn get(&self) -> Vec<u8> {
        match self {
            Bytes::Lit(b) => b.clone(),
            Bytes::Fill(n, b) => vec![*b; *n as usize],
        }
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bytes::Lit(b) => {
                f.write_char('"')?;
                for &c in b {
                    write!(f, "{}", core::ascii::escape_default(c))?;
                }
                f.write_char('"')
            }
            Bytes::Fill(n, b) => write!(f, "{n}×{}", core::ascii::escape_default(*b)),
        }
    }
}

/// One raw host call (or the end of the script).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `input` into a buffer of `cap` bytes.
    Input {
        /// Buffer size.
        cap: u32,
    },
    /// `output` of these bytes.
    Output(Bytes),
    /// `ns_open` of this name.
    NsOpen(Bytes),
    /// `get` into a buffer of `cap` bytes.
    Get {
        /// Namespace handle.
        ns: i32,
        /// Key.
        key: Bytes,
        /// Buffer size.
        cap: u32,
    },
    /// `put`.
    Put {
        /// Namespace handle.
        ns: i32,
        /// Key.
        key: Bytes,
        /// Value.
        val: Bytes,
    },
    /// `delete`.
    Delete {
        /// Namespace handle.
        ns: i32,
        /// Key.
        key: Bytes,
    },
    /// `add`, into an 8-byte buffer.
    Add {
        /// Namespace handle.
        ns: i32,
        /// Key.
        key: Bytes,
        /// Addend.
        delta: i64,
    },
    /// `cas`; `None` is `NONE` (expected absent / delete on success).
    Cas {
        /// Namespace handle.
        ns: i32,
        /// Key.
        key: Bytes,
        /// Expected value.
        exp: Option<Bytes>,
        /// New value.
        new: Option<Bytes>,
    },
    /// `scan` into a buffer of `cap` bytes; `hi: None` is no upper bound.
    Scan {
        /// Namespace handle.
        ns: i32,
        /// Lower bound.
        lo: Bytes,
        /// Upper bound.
        hi: Option<Bytes>,
        /// `SCAN_*` flags (any bits).
        flags: u32,
        /// Buffer size.
        cap: u32,
    },
    /// `log` at a raw level.
    Log {
        /// Level, unclamped.
        level: i32,
        /// Message.
        msg: Bytes,
    },
    /// Stop here and return this code from `rime_invoke` (the transcript so
    /// far is the output either way). Without it a script returns `0`.
    Return(i32),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Opt<'a>(&'a Option<Bytes>);
        impl fmt::Display for Opt<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Some(b) => b.fmt(f),
                    None => f.write_str("NONE"),
                }
            }
        }
        match self {
            Op::Input { cap } => write!(f, "input(cap {cap})"),
            Op::Output(b) => write!(f, "output({b})"),
            Op::NsOpen(b) => write!(f, "ns_open({b})"),
            Op::Get { ns, key, cap } => write!(f, "get(ns {ns}, {key}, cap {cap})"),
            Op::Put { ns, key, val } => write!(f, "put(ns {ns}, {key}, {val})"),
            Op::Delete { ns, key } => write!(f, "delete(ns {ns}, {key})"),
            Op::Add { ns, key, delta } => write!(f, "add(ns {ns}, {key}, {delta})"),
            Op::Cas { ns, key, exp, new } => {
                write!(f, "cas(ns {ns}, {key}, {}, {})", Opt(exp), Opt(new))
            }
            Op::Scan {
                ns,
                lo,
                hi,
                flags,
                cap,
            } => write!(
                f,
                "scan(ns {ns}, {lo}, {}, flags {flags}, cap {cap})",
                Opt(hi)
            ),
            Op::Log { level, msg } => write!(f, "log({level}, {msg})"),
            Op::Return(code) => write!(f, "return {code}"),
        }
    }
}

const INPUT: u8 = 1;
const OUTPUT: u8 = 2;
const NS_OPEN: u8 = 3;
const GET: u8 = 4;
const PUT: u8 = 5;
const DELETE: u8 = 6;
const ADD: u8 = 7;
const CAS: u8 = 8;
const SCAN: u8 = 9;
const LOG: u8 = 10;
const RETURN: u8 = 11;

const LIT: u8 = 0;
const FILL: u8 = 1;
const ABSENT: u8 = 2;

/// The script of `ops`: the probe's input.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut w = Vec::new();
    for op in ops {
        op.encode(&mut w);
    }
    w
}

fn put_bytes(w: &mut Vec<u8>, b: &Bytes) {
    match b {
        Bytes::Lit(b) => {
            w.push(LIT);
            w.extend_from_slice(&(b.len() as u32).to_le_bytes());
            w.extend_from_slice(b);
        }
        Bytes::Fill(n, b) => {
            w.push(FILL);
            w.extend_from_slice(&n.to_le_bytes());
            w.push(*b);
        }
    }
}

fn put_opt(w: &mut Vec<u8>, b: &Option<Bytes>) {
    match b {
        Some(b) => put_bytes(w, b),
        None => w.push(ABSENT),
    }
}

impl Op {
    fn encode(&self, w: &mut Vec<u8>) {
        let i32_ = |w: &mut Vec<u8>, v: i32| w.extend_from_slice(&v.to_le_bytes());
        match self {
            Op::Input { cap } => {
                w.push(INPUT);
                w.extend_from_slice(&cap.to_le_bytes());
            }
            Op::Output(b) => {
                w.push(OUTPUT);
                put_bytes(w, b);
            }
            Op::NsOpen(b) => {
                w.push(NS_OPEN);
                put_bytes(w, b);
            }
            Op::Get { ns, key, cap } => {
                w.push(GET);
                i32_(w, *ns);
                put_bytes(w, key);
                w.extend_from_slice(&cap.to_le_bytes());
            }
            Op::Put { ns, key, val } => {
                w.push(PUT);
                i32_(w, *ns);
                put_bytes(w, key);
                put_bytes(w, val);
            }
            Op::Delete { ns, key } => {
                w.push(DELETE);
                i32_(w, *ns);
                put_bytes(w, key);
            }
            Op::Add { ns, key, delta } => {
                w.push(ADD);
                i32_(w, *ns);
                put_bytes(w, key);
                w.extend_from_slice(&delta.to_le_bytes());
            }
            Op::Cas { ns, key, exp, new } => {
                w.push(CAS);
                i32_(w, *ns);
                put_bytes(w, key);
                put_opt(w, exp);
                put_opt(w, new);
            }
            Op::Scan {
                ns,
                lo,
                hi,
                flags,
                cap,
            } => {
                w.push(SCAN);
                i32_(w, *ns);
                put_bytes(w, lo);
                put_opt(w, hi);
                w.extend_from_slice(&flags.to_le_bytes());
                w.extend_from_slice(&cap.to_le_bytes());
            }
            Op::Log { level, msg } => {
                w.push(LOG);
                i32_(w, *level);
                put_bytes(w, msg);
            }
            Op::Return(code) => {
                w.push(RETURN);
                i32_(w, *code);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Option<Op> {
        Some(match r.u8()? {
            INPUT => Op::Input { cap: r.u32()? },
            OUTPUT => Op::Output(r.bytes()?),
            NS_OPEN => Op::NsOpen(r.bytes()?),
            GET => Op::Get {
                ns: r.i32()?,
                key: r.bytes()?,
                cap: r.u32()?,
            },
            PUT => Op::Put {
                ns: r.i32()?,
                key: r.bytes()?,
                val: r.bytes()?,
            },
            DELETE => Op::Delete {
                ns: r.i32()?,
                key: r.bytes()?,
            },
            ADD => Op::Add {
                ns: r.i32()?,
                key: r.bytes()?,
                delta: i64::from_le_bytes(r.take(8)?.try_into().ok()?),
            },
            CAS => Op::Cas {
                ns: r.i32()?,
                key: r.bytes()?,
                exp: r.opt()?,
                new: r.opt()?,
            },
            SCAN => Op::Scan {
                ns: r.i32()?,
                lo: r.bytes()?,
                hi: r.opt()?,
                flags: r.u32()?,
                cap: r.u32()?,
            },
            LOG => Op::Log {
                level: r.i32()?,
                msg: r.bytes()?,
            },
            RETURN => Op::Return(r.i32()?),
            _ => return None,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(self.u32()? as i32)
    }
    fn opt(&mut self) -> Option<Option<Bytes>> {
        if self.buf.get(self.at) == Some(&ABSENT) {
            self.at += 1;
            return Some(None);
        }
        self.bytes().map(Some)
    }
    fn bytes(&mut self) -> Option<Bytes> {
        match self.u8()? {
            LIT => {
                let n = self.u32()? as usize;
                Some(Bytes::Lit(self.take(n)?.to_vec()))
            }
            FILL => Some(Bytes::Fill(self.u32()?, self.u8()?)),
            _ => None,
        }
    }
}

/// Runs the script `script`: returns `rime_invoke`'s result and the
/// transcript, one line per call made.
pub fn run(script: &[u8]) -> (i32, String) {
    let mut out = String::new();
    let mut r = Reader { buf: script, at: 0 };
    while r.at < script.len() {
        let at = r.at;
        let Some(op) = Op::decode(&mut r) else {
            let _ = writeln!(out, "malformed script at byte {at}");
            return (RESULT_ERROR, out);
        };
        if let Op::Return(code) = op {
            return (code, out);
        }
        exec(&op, &mut out);
    }
    (RESULT_OK, out)
}

/// One transcript line: the result, and the buffer if the call had one.
fn line(out: &mut String, result: i32, buf: Option<&[u8]>) {
    let _ = write!(out, "{result}");
    if let Some(buf) = buf {
        out.push(' ');
        for b in buf {
            let _ = write!(out, "{b:02x}");
        }
    }
    out.push('\n');
}

fn exec(op: &Op, out: &mut String) {
    match op {
        Op::Input { cap } => {
            let mut buf = vec![SENTINEL; *cap as usize];
            let r = raw::input(&mut buf);
            line(out, r, Some(&buf));
        }
        Op::Output(b) => line(out, raw::output(&b.get()), None),
        Op::NsOpen(name) => line(out, raw::ns_open(&name.get()), None),
        Op::Get { ns, key, cap } => {
            let mut buf = vec![SENTINEL; *cap as usize];
            let r = raw::get(*ns, &key.get(), &mut buf);
            line(out, r, Some(&buf));
        }
        Op::Put { ns, key, val } => line(out, raw::put(*ns, &key.get(), &val.get()), None),
        Op::Delete { ns, key } => line(out, raw::delete(*ns, &key.get()), None),
        Op::Add { ns, key, delta } => {
            let mut buf = [SENTINEL; 8];
            let r = raw::add(*ns, &key.get(), *delta, &mut buf);
            line(out, r, Some(&buf));
        }
        Op::Cas { ns, key, exp, new } => {
            let (exp, new) = (exp.as_ref().map(Bytes::get), new.as_ref().map(Bytes::get));
            let r = raw::cas(*ns, &key.get(), exp.as_deref(), new.as_deref());
            line(out, r, None);
        }
        Op::Scan {
            ns,
            lo,
            hi,
            flags,
            cap,
        } => {
            let mut buf = vec![SENTINEL; *cap as usize];
            let hi = hi.as_ref().map(Bytes::get);
            let r = raw::scan(*ns, &lo.get(), hi.as_deref(), *flags, &mut buf);
            line(out, r, Some(&buf));
        }
        Op::Log { level, msg } => {
            raw::log(*level, &msg.get());
            out.push_str("log\n");
        }
        Op::Return(_) => {}
    }
}
