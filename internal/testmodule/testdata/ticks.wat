;; ticks writes "tick\n" to stdout, then sleeps 200 ms in poll_oneoff, and
;; again, until it is stopped: a guest whose output comes while it runs.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "tick\n")
  (func (export "_start")
    ;; the iovec of "tick\n" at 140
    (i32.store (i32.const 140) (i32.const 200))
    (i32.store (i32.const 144) (i32.const 5))
    ;; a relative clock subscription of 200 ms at 0 (see poll_sleep.wat)
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 200000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (loop $forever
      (drop (call $fd_write (i32.const 1) (i32.const 140) (i32.const 1) (i32.const 148)))
      (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (br $forever))))
