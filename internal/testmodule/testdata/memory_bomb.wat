;; memory_bomb grows its memory one page at a time until memory.grow fails,
;; touching each new page, then traps with unreachable.
(module
  (memory 1)
  (func (export "_start")
    (local $pages i32)
    (loop $grow
      (local.set $pages (memory.grow (i32.const 1)))
      (if (i32.eq (local.get $pages) (i32.const -1))
        (then unreachable))
      (i32.store (i32.mul (local.get $pages) (i32.const 65536)) (i32.const 1))
      (br $grow))))
