;; reactor is a WASI reactor: _initialize sets up state, "answer" reads it
;; (42 after _initialize, 0 without), "greet" prints "hi from reactor\n".
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $state (mut i32) (i32.const 0))
  (data (i32.const 100) "hi from reactor\n")
  (func (export "_initialize")
    (global.set $state (i32.const 42)))
  (func (export "answer") (result i32)
    (global.get $state))
  (func (export "greet")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
