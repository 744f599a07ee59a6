;; The smallest component faaslet: one core module exporting
;; `rime:faaslet/handler@0.1.0` whose `handle` answers `ok([])` and imports
;; nothing. The result area at offset 16 is zeroed memory: discriminant 0
;; (`ok`), list pointer 0, length 0. `realloc` is a bump allocator for the
;; input list, reset by nothing (an instance serves one invocation).
(component
  (core module $m
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (global.get $next))
      (global.set $next (i32.add (local.get $at) (local.get 3)))
      (local.get $at))
    (func (export "handle") (param i32 i32) (result i32)
      (i32.const 16)))
  (core instance $i (instantiate $m))
  (type $output (result (list u8) (error string)))
  (func $handle (param "input" (list u8)) (result $output)
    (canon lift (core func $i "handle")
      (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (instance $handler (export "handle" (func $handle)))
  (export "rime:faaslet/handler@0.1.0" (instance $handler)))
