;; deep_dirs nests directories as deep as it is let: from the preopen at
;; fd 3 it loops path_create_directory "a" and path_open "a" (a directory
;; descriptor), closing the one before, so that only the depth grows. It
;; exits with the number of levels it made when mkdir failed with
;; ENAMETOOLONG (37), 200 + the errno when mkdir failed otherwise (28 is
;; ENOSPC, the write budget), or 250 when path_open failed.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "a")
  (func (export "_start")
    (local $fd i32) (local $levels i32) (local $errno i32)
    (local.set $fd (i32.const 3))
    (loop $deeper
      (local.set $errno (call $mkdir (local.get $fd) (i32.const 100) (i32.const 1)))
      (if (local.get $errno)
        (then
          (if (i32.eq (local.get $errno) (i32.const 37))
            (then (call $proc_exit (local.get $levels))))
          (call $proc_exit (i32.add (i32.const 200) (local.get $errno)))))
      (local.set $levels (i32.add (local.get $levels) (i32.const 1)))
      ;; oflags 2: O_DIRECTORY; rights 8704: path_create_directory and
      ;; path_open, also to inherit.
      (if (call $path_open (local.get $fd) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 2)
            (i64.const 8704) (i64.const 8704) (i32.const 0) (i32.const 0))
        (then (call $proc_exit (i32.const 250))))
      (if (i32.ne (local.get $fd) (i32.const 3))
        (then (drop (call $fd_close (local.get $fd)))))
      (local.set $fd (i32.load (i32.const 0)))
      (br $deeper))))
