;; dirty_memory checks that a run's linear memory starts zeroed, then dirties
;; it for whatever runs next: main(pages) grows the memory to `pages` pages
;; (it starts with one), returns 1 if any byte of it was not zero, and fills
;; every byte with 0xAA before returning 0.
(module
  (memory 1)
  (func (export "main") (param $pages i32) (result i32)
    (local $i i32) (local $end i32) (local $dirty i32)
    (if (i32.gt_u (local.get $pages) (i32.const 1))
      (then (drop (memory.grow (i32.sub (local.get $pages) (i32.const 1))))))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (if (i32.load8_u (local.get $i))
          (then (local.set $dirty (i32.const 1))))
        (i32.store8 (local.get $i) (i32.const 0xAA))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (local.get $dirty)))
