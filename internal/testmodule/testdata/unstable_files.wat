;; unstable_files checks the legacy wasi_unstable layouts of file calls: it
;; opens in.txt (5 bytes) under the preopen at fd 3, seeks to its end with
;; whence 1 (END in wasi_unstable, CUR in preview1) and reads its filestat
;; (nlink as a u32 at 20, size at 24). It exits with pos + 10*nlink when the
;; size is right (15 for one link), else 99.
(module
  (import "wasi_unstable" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_unstable" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "in.txt")
  (func (export "_start")
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 0)
          (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 0))
      (then (call $proc_exit (i32.const 98))))
    (if (call $fd_seek (i32.load (i32.const 0)) (i64.const 0) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 97))))
    (if (call $fd_filestat_get (i32.load (i32.const 0)) (i32.const 200))
      (then (call $proc_exit (i32.const 96))))
    (if (i64.ne (i64.load (i32.const 224)) (i64.const 5))
      (then (call $proc_exit (i32.const 99))))
    (call $proc_exit
      (i32.add (i32.wrap_i64 (i64.load (i32.const 8)))
               (i32.mul (i32.load (i32.const 220)) (i32.const 10))))))
