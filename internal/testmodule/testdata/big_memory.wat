;; big_memory declares a minimum of 4096 pages (256 MiB).
(module
  (memory 4096)
  (func (export "_start")))
