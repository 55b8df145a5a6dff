;; loop spins forever in a tight loop: a plain module whose _start never ends.
(module
  (func (export "_start")
    (loop $forever
      (br $forever))))
