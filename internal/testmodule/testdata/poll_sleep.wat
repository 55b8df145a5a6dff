;; poll_sleep blocks in poll_oneoff on one relative clock subscription of
;; 3600 s, then writes "woke\n".
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "woke\n")
  (func (export "_start")
    ;; subscription at 0 (48 bytes): userdata u64, tag u8 (0 = clock),
    ;; clock id u32 at 16, timeout u64 at 24, precision u64 at 32, flags u16 at 40.
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    ;; events out at 64, nevents at 128
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store (i32.const 140) (i32.const 200))
    (i32.store (i32.const 144) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 140) (i32.const 1) (i32.const 148)))))
