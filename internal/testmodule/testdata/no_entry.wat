;; no_entry exports functions, none of them a default entry point.
(module
  (func (export "square") (param i32) (result i32)
    (i32.mul (local.get 0) (local.get 0)))
  (func (export "neg") (param f64) (result f64)
    (f64.neg (local.get 0))))
