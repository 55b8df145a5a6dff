;; flood_both writes "out!\n" to stdout and "err!\n" to stderr, in turn,
;; forever: its output passes a run's cap on neither stream alone.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "out!\n")
  (data (i32.const 48) "err!\n")
  (func (export "_start")
    ;; iovec at 0: base 32, len 5; iovec at 8: base 48, len 5
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 5))
    (i32.store (i32.const 8) (i32.const 48))
    (i32.store (i32.const 12) (i32.const 5))
    (loop $again
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))
      (drop (call $fd_write (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 24)))
      (br $again))))
