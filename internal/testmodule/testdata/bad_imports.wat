;; bad_imports needs things no WASI engine provides.
(module
  (import "env" "console_log" (func (param i32)))
  (import "wasi" "thread-spawn" (func (param i32) (result i32)))
  (import "env" "memory" (memory 1))
  (import "wasi_snapshot_preview1" "fd_write"
    (func (param i32 i32 i32 i32) (result i32)))
  (func (export "_start")))
