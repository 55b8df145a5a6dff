;; plain_main has no _start but a main that returns 42, and a run that
;; returns 7: the default entry is main.
(module
  (func (export "run") (result i32) (i32.const 7))
  (func (export "main") (result i32) (i32.const 42)))
