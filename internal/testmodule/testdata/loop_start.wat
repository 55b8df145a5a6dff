;; loop_start spins forever in its start section, during instantiation.
(module
  (func $spin (loop $forever (br $forever)))
  (start $spin)
  (func (export "_start")))
