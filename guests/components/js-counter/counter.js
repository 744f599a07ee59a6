// js-counter: a counter faaslet in JavaScript, against `wasi:keyvalue`
// (store and atomics, 0.2.0-draft2) only, built into a component of the
// `rime:faaslet/faaslet` world (faas/wit/) by componentize-js
// (scripts/build-guests).
//
// Input: a command, text, words separated by one space:
//
// - `incr BUCKET KEY`: adds 1 to KEY (an 8-byte little-endian i64, the
//   layout of `atomics.increment`), answers the new value in decimal.
// - `get BUCKET KEY`: the value's bytes, or `none`.
// - `fail BUCKET KEY`: increments, then fails with an error (nothing commits).
// - `now`: the wall clock in milliseconds and a random number.
// - `noop`: answers nothing.

import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";

const utf8 = new TextEncoder();

// A keyvalue error (thrown as a ComponentError carrying the WIT variant)
// as text.
function describe(e) {
  const error = e && e.payload;
  if (!error) return String(e);
  if (error.tag === "other") return error.val;
  return error.tag;
}

function bucket(name) {
  try {
    return open(name);
  } catch (e) {
    throw `cannot open bucket ${JSON.stringify(name)}: ${describe(e)}`;
  }
}

function incr(name, key) {
  try {
    return increment(bucket(name), key, 1n);
  } catch (e) {
    throw typeof e === "string" ? e : describe(e);
  }
}

export const handler = {
  // `result<list<u8>, string>`: a return is `ok`, a thrown string `err`.
  handle(input) {
    const words = new TextDecoder().decode(input).split(" ");
    const [command, name, key] = words;
    if (command === "incr" && words.length === 3) {
      return utf8.encode(String(incr(name, key)));
    }
    if (command === "get" && words.length === 3) {
      const value = bucket(name).get(key);
      return value === undefined ? utf8.encode("none") : value;
    }
    if (command === "fail" && words.length === 3) {
      const n = incr(name, key);
      throw `failed on purpose after incrementing to ${n}`;
    }
    if (command === "now" && words.length === 1) {
      console.log("now called");
      return utf8.encode(`${Date.now()} ${Math.random()}`);
    }
    if (command === "noop" && words.length === 1) {
      return new Uint8Array(0);
    }
    throw `unknown command ${JSON.stringify(words.join(" "))}`;
  },
};
