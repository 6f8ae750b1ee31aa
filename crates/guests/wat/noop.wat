;; The smallest WASI command: it exports memory and a _start that returns at once, for
;; measuring sandbox start-up and dispatch overhead.
(module
  (memory (export "memory") 1)
  (func (export "_start")))
