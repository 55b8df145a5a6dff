;; flood_escapes writes bytes that JSON can only escape as \u00XX (six bytes
;; each) to stdout and stderr, in turn, forever: valid UTF-8 whose text in a
;; JSON answer would be six times its size.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "\01\02\03\04\05\06\07\0b\0e\0f\10\11\12\13\14\15")
  (func (export "_start")
    ;; iovec at 0: base 32, len 16
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 16))
    (loop $again
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 24)))
      (br $again))))
