;; add is a plain module of numeric functions and no imports.
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "add64") (param i64 i64) (result i64)
    (i64.add (local.get 0) (local.get 1)))
  (func (export "addf") (param f64 f64) (result f64)
    (f64.add (local.get 0) (local.get 1)))
  (func (export "halve") (param f32) (result f32)
    (f32.div (local.get 0) (f32.const 2)))
  (func (export "pair") (result i32 i64)
    (i32.const -1) (i64.const 9007199254740993))
  (func (export "takes_ref") (param externref)))
