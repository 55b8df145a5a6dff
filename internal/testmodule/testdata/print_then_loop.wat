;; print_then_loop writes "started\n" to stdout and "warming up\n" to stderr,
;; then spins forever in a tight loop: what it printed must survive the
;; worker being killed at the deadline.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "started\n")
  (data (i32.const 120) "warming up\n")
  (func (export "_start")
    ;; iovec at 0: "started\n" → stdout
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; iovec at 16: "warming up\n" → stderr
    (i32.store (i32.const 16) (i32.const 120))
    (i32.store (i32.const 20) (i32.const 11))
    (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 8)))
    (loop $forever
      (br $forever))))
