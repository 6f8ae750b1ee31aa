;; A WASI command that imports a function no host provides: linking must fail with a clear
;; error before anything runs.
(module
  (import "env" "does_not_exist" (func $does_not_exist))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $does_not_exist)))
