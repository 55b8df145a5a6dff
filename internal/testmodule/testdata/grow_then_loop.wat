;; grow_then_loop grows its memory from 1 page to 160 (10 MiB), then spins
;; forever: a run stopped at its deadline still reports the memory it used.
(module
  (memory 1)
  (func (export "_start")
    (drop (memory.grow (i32.const 159)))
    (loop $forever
      (br $forever))))
