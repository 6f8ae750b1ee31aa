;; A WASI command that grows a funcref table 1024 elements at a time until table.grow refuses,
;; then traps, so a table limit shows up as a trap rather than a clean exit.
(module
  (memory (export "memory") 1)
  (table $table 1 funcref)
  (func (export "_start")
    (loop $grow
      (br_if $grow
        (i32.ne
          (table.grow $table (ref.null func) (i32.const 1024))
          (i32.const -1))))
    unreachable))
