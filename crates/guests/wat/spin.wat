;; A WASI command whose _start loops forever without calling the host: only fuel or an epoch
;; deadline can stop it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
