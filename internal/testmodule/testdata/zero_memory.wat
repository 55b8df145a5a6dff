;; zero_memory declares a memory of no pages, grows it by one and uses it:
;; main returns the value it stored, 7.
(module
  (memory 0)
  (func (export "main") (result i32)
    (drop (memory.grow (i32.const 1)))
    (i32.store (i32.const 100) (i32.const 7))
    (i32.load (i32.const 100))))
