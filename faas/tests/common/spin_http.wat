;; An HTTP-triggered component (it exports wasi:http/incoming-handler)
;; whose handler loops until its deadline, never answering. It imports
;; only the two resource types of wasi:http/types that `handle` takes.
;; Used by faas/tests/component_exec.rs and cli/tests/http_fn.rs.
(component
  (import "wasi:http/types@0.2.0" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))))
  (alias export $types "incoming-request" (type $req))
  (alias export $types "response-outparam" (type $out))
  (core module $m
    (func (export "handle") (param i32 i32) (loop $l (br $l))))
  (core instance $i (instantiate $m))
  (func $handle (param "request" (own $req)) (param "response-out" (own $out))
    (canon lift (core func $i "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))
