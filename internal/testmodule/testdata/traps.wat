;; traps exports one function per kind of trap.
(module
  (memory 1)
  (func (export "unreachable") unreachable)
  (func (export "div_by_zero") (result i32)
    (i32.div_s (i32.const 1) (i32.const 0)))
  (func (export "out_of_bounds") (result i32)
    (i32.load (i32.const 70000)))
  (func $recurse (export "stack_exhausted") (param i32) (result i32)
    (i32.add (i32.const 1) (call $recurse (local.get 0)))))
