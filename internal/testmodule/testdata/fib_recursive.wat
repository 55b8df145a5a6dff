;; fib_recursive is a loop-free, doubly recursive Fibonacci: no loop
;; back-edge, so in-guest cancellation checks never run while it computes.
;; _start computes fib(60), which would take days.
(module
  (func $fib (export "fib") (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else
        (i64.add
          (call $fib (i64.sub (local.get $n) (i64.const 1)))
          (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func (export "_start")
    (drop (call $fib (i64.const 60)))))
