;; poll_ready polls a 3600 s clock together with "stdout writable" and
;; "stdin readable": both fds are ready, so poll_oneoff returns at once with
;; two events and the guest prints "events 2, types 2 1\n" (fd_write, fd_read).
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1000) "events ?, types ? ?\n")
  (func (export "_start")
    ;; subscription 0 at 0: clock, 3600 s relative
    (i64.store (i32.const 0) (i64.const 1))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    ;; subscription 1 at 48: fd_write on fd 1
    (i64.store (i32.const 48) (i64.const 2))
    (i32.store8 (i32.const 56) (i32.const 2))
    (i32.store (i32.const 64) (i32.const 1))
    ;; subscription 2 at 96: fd_read on fd 0
    (i64.store (i32.const 96) (i64.const 3))
    (i32.store8 (i32.const 104) (i32.const 1))
    (i32.store (i32.const 112) (i32.const 0))
    ;; events at 200 (3 x 32 bytes), nevents at 400
    (drop (call $poll_oneoff (i32.const 0) (i32.const 200) (i32.const 3) (i32.const 400)))
    (i32.store8 (i32.const 1007) (i32.add (i32.const 48) (i32.load (i32.const 400))))
    (i32.store8 (i32.const 1016) (i32.add (i32.const 48) (i32.load8_u (i32.const 210))))
    (i32.store8 (i32.const 1018) (i32.add (i32.const 48) (i32.load8_u (i32.const 242))))
    (i32.store (i32.const 500) (i32.const 1000))
    (i32.store (i32.const 504) (i32.const 20))
    (drop (call $fd_write (i32.const 1) (i32.const 500) (i32.const 1) (i32.const 508)))))
