;; trap_start traps in its start section, while being instantiated.
(module
  (func $boom unreachable)
  (start $boom)
  (func (export "_start")))
