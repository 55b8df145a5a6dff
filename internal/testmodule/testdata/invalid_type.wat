;; invalid_type fails validation: the function returns an i64 where it
;; declares an i32. Built with wat2wasm --no-check.
(module
  (func (export "_start") (result i32)
    (i64.const 1)))
